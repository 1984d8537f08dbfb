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
    assert config.load().model == config.DEFAULT_MODEL
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
    ("grammar", "yes", "grammar must be one of auto, on, off, not 'yes'"),
    ("edit_retries", "-1", "edit_retries must be at least 0, not '-1'"),
])
def test_bad_values_are_one_line_errors(key: str, raw: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.coerce(key, raw)


def test_the_grammar_and_repair_keys_default_to_auto_and_1_and_cb_config_show_lists_them(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = config.load()
    assert (s.grammar, s.edit_retries) == ("auto", 1)
    (project / ".cb.toml").write_text('grammar = "off"\nedit_retries = 0\n')
    monkeypatch.setenv("CB_GRAMMAR", "on")
    s = config.load()
    assert (s.grammar, s.source["grammar"], s.edit_retries) == ("on", "env CB_GRAMMAR", 0)
    shown = {line.split()[0]: line.split() for line in CliRunner().invoke(app, ["config", "show"]).output.splitlines()
             if line.strip()}
    assert shown["grammar"] == ["grammar", "'on'", "(env", "CB_GRAMMAR)"]
    assert shown["edit_retries"][:2] == ["edit_retries", "0"] and shown["edit_retries"][2].endswith(".cb.toml)")
    (project / ".cb.toml").write_text('edit_retries = -2\n')
    with pytest.raises(config.ConfigError, match="edit_retries must be at least 0, not -2"):
        config.load()


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
    assert (switched.model, switched.source["model"], s.model) == ("other", "session", config.DEFAULT_MODEL)


def test_openai_env_vars_are_fallbacks_below_every_cb_layer(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai.example/v1")
    s = config.load()
    assert (s.api_key, s.source["api_key"]) == ("sk-openai", "env OPENAI_API_KEY")
    assert (s.base_url, s.source["base_url"]) == ("http://openai.example/v1", "env OPENAI_BASE_URL")
    shown = CliRunner().invoke(app, ["config", "show"]).stdout
    assert "(env OPENAI_API_KEY)" in shown and "(env OPENAI_BASE_URL)" in shown and "sk-openai" not in shown
    (project / ".cb.toml").write_text('base_url = "http://project.example/v1"\n')
    assert config.load().base_url == "http://project.example/v1"  # cb's own config wins over the fallback
    monkeypatch.setenv("CB_API_KEY", "sk-cb")
    s = config.load()
    assert (s.api_key, s.source["api_key"]) == ("sk-cb", "env CB_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", " ")  # blank is unset, for a fallback
    monkeypatch.delenv("CB_API_KEY")
    assert config.load().source["api_key"] == "default"


def test_the_openai_key_is_never_sent_to_the_local_server(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cb.chat import api_key

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    s = config.load()
    assert api_key(s, local=False) == "sk-openai"  # a base_url the user configured: as the OpenAI SDK does
    assert api_key(s, local=True) == ""
    monkeypatch.setenv("ULM_API_KEY", "ulm-key")
    assert api_key(s, local=True) == "ulm-key"
    assert api_key(config.load({"api_key": "mine"}), local=True) == "mine"


def test_config_set_writes_0600_atomically_keeping_comments(project: Path) -> None:
    path = paths.config_file()
    path.parent.mkdir(parents=True)
    path.write_text('# my settings\nmodel = "x"   # the model I use\n\n[aliases]\nfast = "y"  # quick\n')
    path.chmod(0o644)
    assert CliRunner().invoke(app, ["config", "set", "api_key", "sk-1"]).exit_code == 0
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.startswith('# my settings\nmodel = "x"   # the model I use\napi_key = "sk-1"\n')
    assert 'fast = "y"  # quick' in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]  # no temp file left
    assert CliRunner().invoke(app, ["config", "set", "temperature", "0.5", "--project"]).exit_code == 0
    assert (project / ".cb.toml").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_old_file_whole(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = paths.config_file()
    path.parent.mkdir(parents=True)
    path.write_text('model = "before"\n')

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(config.ConfigError, match="cannot write config file"):
        config.set_value("model", "after", path)
    assert path.read_text() == 'model = "before"\n'
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]


def test_a_symlinked_config_is_written_through_to_its_target(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "cb.toml"
    target.parent.mkdir()
    target.write_text("# shared\n")
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().symlink_to(target)
    config.set_value("max_tokens", "64", paths.config_file())
    assert paths.config_file().is_symlink() and target.read_text() == "# shared\nmax_tokens = 64\n"


def test_a_key_in_a_readable_file_is_warned_of_once(project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (project / ".cb.toml").write_text('api_key = "sk-1"\n')
    (project / ".cb.toml").chmod(0o640)
    config.load()
    config.load()
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cb: warning: ") and "holds an API key" in err[0]
    assert err[0].endswith(f"run: chmod 600 {project / '.cb.toml'}")
    (project / ".cb.toml").write_text('model = "m"\n')  # no key: nothing to warn of
    paths.config_file().parent.mkdir(parents=True)
    paths.config_file().write_text('api_key = "sk-2"\n')
    paths.config_file().chmod(0o600)
    config.load()
    assert capfd.readouterr().err == ""


def test_the_clipboard_key_in_a_readable_clip_env_is_warned_of(project: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    from cb.clip import config as clip_config

    path = clip_config.write_env_value("CB_CLIP_KEY", "k" * 32)
    assert path.stat().st_mode & 0o777 == 0o600
    clip_config.read_env_file()
    assert capfd.readouterr().err == ""
    path.chmod(0o604)
    clip_config.read_env_file()
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "clipboard key" in err and f"chmod 600 {path}" in err


def test_aliases_resolve_in_every_layer_and_are_kept_in_the_config(project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["models", "alias", "fast", "qwen2.5-coder-0.5b"]).exit_code == 0
    assert runner.invoke(app, ["models", "alias", "mine", "m.gguf", "--project"]).exit_code == 0
    assert config.load().aliases == {"fast": "qwen2.5-coder-0.5b", "mine": "m.gguf"}
    assert paths.config_file().stat().st_mode & 0o777 == 0o600
    s = config.load({"model": "fast"})
    assert (s.model, s.source["model"]) == ("qwen2.5-coder-0.5b", "flag, alias fast")
    monkeypatch.setenv("CB_MODEL", "mine")
    assert config.load().model == "m.gguf"
    assert config.load().replaced("session", model="fast").model == "qwen2.5-coder-0.5b"  # the REPL's /model
    assert config.load({"model": "other"}).model == "other"
    assert runner.invoke(app, ["models", "alias", "fast"]).stdout == "fast = qwen2.5-coder-0.5b\n"
    removed = runner.invoke(app, ["models", "alias", "fast", "--remove"])
    assert removed.exit_code == 0 and "fast" not in config.load().aliases
    assert "[aliases]" not in paths.config_file().read_text()  # the emptied table goes too
    assert runner.invoke(app, ["models", "alias", "fast", "--remove"]).exit_code == 1
    assert runner.invoke(app, ["models", "alias", "two words", "x"]).exit_code == 2
    (project / ".cb.toml").write_text("[aliases]\nbad = 3\n")
    with pytest.raises(config.ConfigError, match=r"\[aliases\] must map names to model names"):
        config.load()


def test_the_default_model_is_the_one_make_run_installs_and_ulm_knows() -> None:
    from ulm.registry import KNOWN

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    [installed] = [line.split(":=")[1].strip() for line in makefile.splitlines() if line.startswith("CODER_MODEL")]
    assert installed == config.DEFAULT_MODEL
    assert KNOWN[config.DEFAULT_MODEL].name == config.DEFAULT_MODEL
