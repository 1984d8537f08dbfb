"""Config layers: defaults < user file < project .cb.toml < CB_* env < flags; typed values; `cb config`.

Run: .venv/bin/python -m pytest tests/cb/test_config.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cb import config, paths
from cb.cli import app


def test_each_layer_overrides_the_one_below(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.load().model == "smollm2-135m"
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text('model = "user"\ntemperature = 1\nmax_tokens = 100\n')
    s = config.load()
    assert (s.model, s.temperature, s.source["model"]) == ("user", 1.0, str(paths.config_file()))
    (project / ".cb.toml").write_text('model = "project"\n')
    assert config.load().model == "project"
    monkeypatch.setenv("CB_MODEL", "env")
    s = config.load()
    assert (s.model, s.source["model"]) == ("env", "env CB_MODEL")
    s = config.load({"model": "flag", "temperature": None})
    assert (s.model, s.temperature, s.max_tokens) == ("flag", 1.0, 100)


def test_project_root_is_the_git_root(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert config.project_root(sub) == tmp_path.resolve()
    (tmp_path / ".cb.toml").write_text("max_tokens = 7\n")
    assert config.load(cwd=sub).max_tokens == 7


@pytest.mark.parametrize(("key", "raw", "message"), [
    ("max_tokens", "lots", "max_tokens must be a int"), ("nope", "1", "unknown config key 'nope'"),
])
def test_bad_values_are_one_line_errors(key: str, raw: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.coerce(key, raw)


def test_broken_config_file_names_the_file(project: Path) -> None:
    (project / ".cb.toml").write_text("model = = 1\n")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert "cannot read config file" in result.output and ".cb.toml" in result.output
    assert "Traceback" not in result.output


def test_config_set_and_show_round_trip(project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["config", "set", "base_url", "http://127.0.0.1:9/v1"]).exit_code == 0
    assert runner.invoke(app, ["config", "set", "temperature", "0", "--project"]).exit_code == 0
    assert runner.invoke(app, ["config", "set", "api_key", 'k"\\ey']).exit_code == 0
    s = config.load()
    assert (s.base_url, s.temperature, s.api_key) == ("http://127.0.0.1:9/v1", 0.0, 'k"\\ey')
    shown = runner.invoke(app, ["config", "show"]).output
    assert "http://127.0.0.1:9/v1" in shown and "********" in shown and 'k"' not in shown
    bad = runner.invoke(app, ["config", "set", "max_tokens", "many"])
    assert bad.exit_code == 2 and "max_tokens must be a int" in bad.output


def test_settings_are_frozen_and_typed_and_the_keys_come_from_their_fields(project: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    key = config.KEYS["max_tokens"]
    assert (key.type, key.default, key.env) == (int, 1024, "CB_MAX_TOKENS") and key.help
    assert list(config.KEYS) == [f.name for f in dataclasses.fields(config.Settings)][:len(config.KEYS)]
    monkeypatch.setenv("CB_TIMEOUT", "30")
    s = config.load()
    assert s.timeout == 30.0 and isinstance(s.timeout, float) and s.source["timeout"] == "env CB_TIMEOUT"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model = "other"  # type: ignore[misc]
    switched = s.replaced("session", model="other")
    assert (switched.model, switched.source["model"], s.model) == ("other", "session", "smollm2-135m")
