"""Settings, keys and service files: R8's plaintext rule, clip.env, `cb clip keygen`, `cb clip service`.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_config.py -q
"""

from __future__ import annotations

import os
import plistlib
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb.cli import app
from cb.clip import config, service
from cb.clip.config import ClipConfigError, load_config

KEY = "k" * 43


def test_defaults_without_redis() -> None:
    cfg = load_config({})
    assert cfg.redis_url is None and cfg.key is None
    assert (cfg.channel, cfg.stream, cfg.max_bytes) == ("clipboard", "clipboard:stream", 1 << 20)


def test_stream_follows_a_custom_channel() -> None:
    cfg = load_config({"CB_CLIP_CHANNEL": "clip:me"})
    assert cfg.stream == "clip:me:stream"


@pytest.mark.parametrize("url", ["redis://10.0.0.5:6379", "redis://redis.example.com", "redis://u:p@[2001:db8::1]:1"])
def test_plaintext_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(ClipConfigError, match="rediss://"):
        load_config({"CB_REDIS_URL": url})


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://localhost", "redis://[::1]:7000",
                                 "rediss://u:p@redis.example.com:6380"])
def test_loopback_plaintext_and_any_tls_are_accepted(url: str) -> None:
    assert load_config({"CB_REDIS_URL": url}).redis_url == url


def test_plaintext_to_remote_allowed_only_when_asked() -> None:
    env = {"CB_REDIS_URL": "redis://10.0.0.5:6379", "CB_CLIP_ALLOW_PLAINTEXT": "1"}
    assert load_config(env).redis_url == "redis://10.0.0.5:6379"


@pytest.mark.parametrize("env,match", [({"CB_REDIS_URL": "http://x"}, "redis://"), ({"CB_CLIP_KEY": "short"}, "short"),
                                       ({"CB_CLIP_MAX_BYTES": "lots"}, "not a number"),
                                       ({"CB_CLIP_MAX_AGE": "0"}, "at least")])
def test_bad_settings_are_one_line_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(ClipConfigError, match=match) as info:
        load_config(env)
    assert "\n" not in str(info.value)


def test_redact_hides_the_password() -> None:
    assert config.redact_url("rediss://clip_sub:s3cret@h:6380/0") == "rediss://clip_sub:***@h:6380/0"
    assert config.redact_url("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


def test_environment_overrides_clip_env() -> None:
    config.write_env_value("CB_CLIP_KEY", KEY)
    config.write_env_value("CB_CLIP_CHANNEL", "from-file")
    assert load_config({"CB_CLIP_CHANNEL": "from-env"}).channel == "from-env"
    assert load_config({}).key == KEY.encode()
    assert stat.S_IMODE(os.stat(config.env_file()).st_mode) == 0o600


def test_keygen_save_writes_a_key_the_listener_reads(cb_home: Path) -> None:
    result = CliRunner().invoke(app, ["clip", "keygen", "--save"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert len(key) == 43
    assert load_config({}).key == key.encode()
    second = CliRunner().invoke(app, ["clip", "keygen"]).stdout.strip()
    assert second != key and load_config({}).key == key.encode()  # without --save nothing changes


def test_sender_name_is_stable_per_box() -> None:
    first = load_config({}, need_sender=True).sender
    assert first and load_config({}, need_sender=True).sender == first


def test_systemd_unit_runs_the_listener_and_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_CLIP_KEY", KEY)
    text = service.service_text("linux")
    assert "[Service]" in text and "Restart=always" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_line.endswith("clip listen")
    assert KEY not in text
    assert f"Environment=CB_HOME={os.environ['CB_HOME']}" in text


def test_launchd_plist_is_valid_and_keeps_the_listener_alive() -> None:
    text = service.service_text("macos")
    job = plistlib.loads(text.encode())
    assert job["ProgramArguments"][-2:] == ["clip", "listen"]
    assert job["KeepAlive"] is True and job["RunAtLoad"] is True
    assert job["EnvironmentVariables"] == {"CB_HOME": os.environ["CB_HOME"]}


def test_service_command_prints_the_unit() -> None:
    result = CliRunner().invoke(app, ["clip", "service", "--platform", "linux"])
    assert result.exit_code == 0 and "ExecStart=" in result.stdout
    bad = CliRunner().invoke(app, ["clip", "service", "--platform", "beos"])
    assert bad.exit_code == 1 and "unknown platform" in bad.output
