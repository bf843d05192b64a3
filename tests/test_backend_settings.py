"""ls_backend.settings: defaults, the names users know, and errors that name the variable."""

from pathlib import Path

import pytest

from ls_backend.settings import BACKBONE_GROWTH, Settings


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.model_dir == Path("model_dir")
    assert settings.database_path == Path("model_dir") / "autoal.sqlite3"
    assert settings.redis_url is None
    assert settings.basic_auth_enabled is False
    assert settings.set_uncertainty_sampling is True
    assert settings.keep_versions == 3
    assert settings.engine_overrides == {}
    assert settings.label_studio_url is None  # no job runs until the operator names its Label Studio
    assert settings.allow_anonymous is False
    assert settings.max_request_bytes == 8_000_000
    assert (settings.job_niceness, settings.job_threads, settings.request_timeout) == (10, None, 15)
    assert settings.task_seconds_field is None  # no task gives its seconds: the cost model predicts them all
    assert Settings.from_env({"AUTOAL_TASK_SECONDS_FIELD": "seconds"}).task_seconds_field == "seconds"


def test_job_process_and_server_limits():
    settings = Settings.from_env({"AUTOAL_JOB_NICENESS": "0", "AUTOAL_JOB_THREADS": "2", "AUTOAL_REQUEST_TIMEOUT": "7"})
    assert (settings.job_niceness, settings.job_threads, settings.request_timeout) == (0, 2, 7)
    assert Settings.from_env({"AUTOAL_JOB_THREADS": "0"}).job_threads is None  # 0: the lanes' defaults


def test_two_speed_settings_and_their_bad_values():
    settings = Settings.from_env({})
    assert settings.fast_path is True and settings.push_top == 300 and settings.backbone_growth == BACKBONE_GROWTH
    settings = Settings.from_env({"AUTOAL_FAST_PATH": "false", "AUTOAL_PUSH_TOP": "50", "AUTOAL_BACKBONE_GROWTH": "1"})
    assert settings.fast_path is False and settings.push_top == 50 and settings.backbone_growth == 1.0
    with pytest.raises(ValueError, match="AUTOAL_BACKBONE_GROWTH must be >= 1.0, got 0.9"):
        Settings.from_env({"AUTOAL_BACKBONE_GROWTH": "0.9"})
    assert Settings.from_env({}).full_push_growth == 1.5
    assert Settings.from_env({"AUTOAL_FULL_PUSH_GROWTH": "2"}).full_push_growth == 2.0
    with pytest.raises(ValueError, match="AUTOAL_FULL_PUSH_GROWTH must be a number"):
        Settings.from_env({"AUTOAL_FULL_PUSH_GROWTH": "often"})
    with pytest.raises(ValueError, match="AUTOAL_PUSH_TOP must be >= 1, got 0"):
        Settings.from_env({"AUTOAL_PUSH_TOP": "0"})
    with pytest.raises(ValueError, match="AUTOAL_FAST_PATH must be true or false"):
        Settings.from_env({"AUTOAL_FAST_PATH": "sometimes"})
    assert Settings(model_dir=Path("m")).embedding_dir(3, "autoal-x") == Path("m/projects/3/embeddings/autoal-x")


def test_job_retry_policy_doubles_the_first_delay_without_a_cap():
    policy = Settings(job_retries=3, job_retry_delay=1000.0).job_retry_policy
    assert policy.retries == 3
    assert [policy.delay(n) for n in (1, 2, 3)] == [1000.0, 2000.0, 4000.0]


def test_names_users_know_and_fallbacks():
    settings = Settings.from_env(
        {
            "LABEL_STUDIO_HOST": "http://ls:8080",
            "LABEL_STUDIO_ACCESS_TOKEN": "abc",
            "BASIC_AUTH_USER": "u",
            "BASIC_AUTH_PASS": "p",
            "MODEL_DIR": "/data/models",
            "REDIS_URL": "redis://r:6379/0",
            "AUTOAL_MEDIA_ALLOWED_HOSTS": " Images.Example.com, cdn.example.org ,",
            "AUTOAL_SET_UNCERTAINTY_SAMPLING": "off",
        }
    )
    assert settings.label_studio_url == "http://ls:8080"
    assert settings.label_studio_api_key == "abc"
    assert settings.basic_auth_enabled
    assert settings.model_dir == Path("/data/models")
    assert settings.redis_url == "redis://r:6379/0"
    assert settings.media_allowed_hosts == ("images.example.com", "cdn.example.org")
    assert settings.set_uncertainty_sampling is False
    assert settings.checkpoint_dir(3, "autoal-v2") == Path("/data/models/projects/3/models/autoal-v2")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUTOAL_KEEP_VERSIONS", "zero", "AUTOAL_KEEP_VERSIONS must be an integer"),
        ("AUTOAL_KEEP_VERSIONS", "0", "AUTOAL_KEEP_VERSIONS must be >= 1"),
        ("AUTOAL_LS_TIMEOUT", "soon", "AUTOAL_LS_TIMEOUT must be a number"),
        ("AUTOAL_PATCH_WEBHOOK_AUTH", "maybe", "AUTOAL_PATCH_WEBHOOK_AUTH must be true or false"),
        ("AUTOAL_ENGINE_CONFIG", "{not json", "AUTOAL_ENGINE_CONFIG is not valid JSON"),
        ("AUTOAL_ENGINE_CONFIG", "[1, 2]", "AUTOAL_ENGINE_CONFIG must be a JSON object"),
        ("LABEL_STUDIO_URL", "localhost:8080", "LABEL_STUDIO_URL must be an http"),
        ("LABEL_STUDIO_URL", "file:///etc", "LABEL_STUDIO_URL must be an http"),
        ("AUTOAL_MEDIA_ALLOWED_HOSTS", "a.com,bad/x", "AUTOAL_MEDIA_ALLOWED_HOSTS: invalid entry 'bad/x'"),
        ("AUTOAL_ALLOW_ANONYMOUS", "sure", "AUTOAL_ALLOW_ANONYMOUS must be true or false"),
        ("AUTOAL_MAX_REQUEST_BYTES", "100", "AUTOAL_MAX_REQUEST_BYTES must be >= 65536"),
        ("AUTOAL_JOB_NICENESS", "-1", "AUTOAL_JOB_NICENESS must be >= 0, got -1"),
        ("AUTOAL_JOB_NICENESS", "low", "AUTOAL_JOB_NICENESS must be an integer, got 'low'"),
        ("AUTOAL_JOB_THREADS", "-2", "AUTOAL_JOB_THREADS must be >= 0, got -2"),
        ("AUTOAL_JOB_THREADS", "1.5", "AUTOAL_JOB_THREADS must be an integer, got '1.5'"),
        ("AUTOAL_REQUEST_TIMEOUT", "0", "AUTOAL_REQUEST_TIMEOUT must be >= 1, got 0"),
        ("AUTOAL_REQUEST_TIMEOUT", "soon", "AUTOAL_REQUEST_TIMEOUT must be an integer, got 'soon'"),
    ],
)
def test_malformed_values_name_the_variable(name, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({name: value})


def test_engine_config_overrides_merge_into_device_defaults():
    settings = Settings.from_env(
        {"AUTOAL_DEVICE": "cpu", "AUTOAL_ENGINE_CONFIG": '{"model": {"train_steps": 50}, "search": {"iterations": 30}}'}
    )
    config = settings.engine_config()
    assert config.model.train_steps == 50
    assert config.search.iterations == 30
    assert config.model.device == "cpu"
    assert config.model.backbone == "small_cnn"  # untouched defaults stay


def test_engine_config_unknown_field_is_named():
    settings = Settings.from_env({"AUTOAL_DEVICE": "cpu", "AUTOAL_ENGINE_CONFIG": '{"model": {"train_stepz": 5}}'})
    with pytest.raises(ValueError, match="AUTOAL_ENGINE_CONFIG: .*train_stepz"):
        settings.engine_config()
