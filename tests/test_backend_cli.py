"""The `autoal` command: argument handling and delegation (serving itself is exercised in tests/integration)."""

import pytest

from ls_backend import cli


def test_worker_needs_redis(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("AUTOAL_DEVICE", "cpu")
    assert cli.main(["worker"]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err


def test_bad_configuration_stops_before_serving(monkeypatch, capsys):
    monkeypatch.setenv("AUTOAL_KEEP_VERSIONS", "none")
    assert cli.main(["serve", "--port", "1"]) == 2
    assert "configuration error: AUTOAL_KEEP_VERSIONS" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train"])
    assert exit_info.value.code == 2


def test_bench_delegates_to_the_offline_benchmark(capsys):
    assert cli.main(["bench", "--help"]) == 0
    assert "usage: autoal bench" in capsys.readouterr().out


def test_serve_passes_host_port_threads_and_the_request_limits(monkeypatch):
    monkeypatch.setenv("AUTOAL_DEVICE", "cpu")
    calls = []
    monkeypatch.setattr(cli, "serve_forever", lambda *args, **kwargs: calls.append((args[:3], kwargs)) or 0)
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "9191", "--threads", "3"]) == 0
    assert cli.main(["serve", "--port", "1", "--request-timeout", "7", "--connection-limit", "20"]) == 0
    assert calls[0] == (("127.0.0.1", 9191, 3), {"request_timeout": 15, "connection_limit": 100})
    assert calls[1] == (("0.0.0.0", 1, 4), {"request_timeout": 7, "connection_limit": 20})
    monkeypatch.setenv("AUTOAL_REQUEST_TIMEOUT", "9")
    assert cli.main(["serve"]) == 0 and cli.main(["serve", "--request-timeout", "3"]) == 0
    assert [kwargs["request_timeout"] for _, kwargs in calls[2:]] == [9, 3]  # the flag wins over the variable


def test_a_bad_request_timeout_stops_before_serving(monkeypatch, capsys):
    monkeypatch.setenv("AUTOAL_REQUEST_TIMEOUT", "-5")
    assert cli.main(["serve"]) == 2
    assert "configuration error: AUTOAL_REQUEST_TIMEOUT must be >= 1, got -5" in capsys.readouterr().err


def test_version_is_printed(capsys):
    import pytest

    from autoal_engine import __version__
    from ls_backend.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"autoal {__version__}"
