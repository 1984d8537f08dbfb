"""cb's settings, layered from lowest to highest precedence:

    defaults  <  user config (TOML at cb.paths.config_file())  <  project config (.cb.toml at the project root)
              <  CB_* environment variables (CB_MODEL, CB_BASE_URL, …)  <  command-line flags

Every key is one typed field of the frozen `Settings` (name, type, default, help; its env var is CB_<NAME>);
`KEYS`, the coercion of strings and `cb config show` are derived from those fields. `load()` returns a
`Settings` that also remembers where each value came from (`cb config show` prints it). Stdlib only
(tomllib), so any command may import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from cb import paths

PROJECT_FILE = ".cb.toml"


def _key(default: Any, help: str) -> Any:
    """A config key: a field of Settings with its default and the help `cb config` shows."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Resolved settings, one typed field per config key (the table of keys); `source[key]` says which layer
    set each value, `project_root` is where the project config was looked for."""

    base_url: str = _key("", "OpenAI-compatible API base URL, e.g. http://127.0.0.1:8080/v1; empty = the local "
                         "ulm serve")
    api_key: str = _key("", "API key sent as a Bearer token (empty = none)")
    model: str = _key("smollm2-135m", "for the local server, the model it loads; with base_url, unset = the "
                      "server's first")
    temperature: float = _key(0.2, "sampling temperature")
    max_tokens: int = _key(1024, "most tokens per answer (up to a quarter of the context is kept free for it)")
    context_length: int = _key(0, "context window in tokens; 0 = ask the server")
    timeout: float = _key(120.0, "seconds to wait for the server to connect, answer, or send the next chunk")
    server_port: int = _key(0, "port of the local ulm serve; 0 = pick a free one at start")
    server_args: str = _key("--mode fast", "arguments for the local `ulm serve`, e.g. \"--mode exact --ctx 4096\" "
                            "(fast: int4 weights, ~5x the fp32 decode speed); changing them restarts it")
    server_start_timeout: float = _key(180.0, "seconds to wait for the local server to become healthy")
    system_prompt: str = _key("", "extra instructions appended to cb's system prompt")
    tab_lines: int = _key(40, "lines of each open agentshell tab's output given to the model")
    code_theme: str = _key("monokai", "Pygments theme for code blocks in answers")
    source: Mapping[str, str] = field(default_factory=dict, compare=False)
    project_root: Path = field(default_factory=Path.cwd)

    def replaced(self, layer: str, **values: Any) -> Settings:
        """These settings with `values` set (coerced to their keys' types) by `layer`."""
        coerced = {key: coerce(key, value) for key, value in values.items()}
        return replace(self, **coerced, source={**self.source, **dict.fromkeys(coerced, layer)})


@dataclass(frozen=True)
class Key:
    """One config key, derived from its Settings field."""

    name: str
    type: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return f"CB_{self.name.upper()}"


_TYPES = get_type_hints(Settings)
KEYS: dict[str, Key] = {f.name: Key(f.name, _TYPES[f.name], f.default, f.metadata["help"])
                        for f in fields(Settings) if "help" in f.metadata}


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line for the user."""


def coerce(key: str, value: Any) -> Any:
    """Convert `value` (a string from env/flags, or a TOML value) to the key's type; raise ConfigError."""
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}")
    kind = KEYS[key].type
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            raise ConfigError(f"{key} must be a {kind.__name__}, not {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{key} must be a {kind.__name__}, not {value!r}")


def project_root(start: Path | None = None) -> Path:
    """The git root above `start` (default: cwd), else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return here


def read_toml(path: Path) -> dict[str, Any]:
    """Read one config file; a missing file is empty, a broken one a ConfigError naming it."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    import tomllib  # only when there is a file to parse (a one-shot cb without config files never needs it)

    try:
        with f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return {key: coerce(key, value) for key, value in data.items()}


def load(flags: Mapping[str, Any] | None = None, cwd: Path | None = None) -> Settings:
    """Resolve every key through the layers; `flags` holds values given on the command line (None = unset)."""
    root = project_root(cwd)
    settings = Settings(source=dict.fromkeys(KEYS, "default"), project_root=root)
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (str(paths.config_file()), read_toml(paths.config_file())),
        (str(root / PROJECT_FILE), read_toml(root / PROJECT_FILE)),
        *((f"env {k.env}", {k.name: os.environ[k.env]}) for k in KEYS.values() if k.env in os.environ),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    for layer, values in layers:
        settings = settings.replaced(layer, **values)
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def set_value(key: str, raw: str, path: Path) -> Any:
    """Set `key` in the config file at `path` (created if missing), keeping its other keys; return the value."""
    value = coerce(key, raw)
    data = read_toml(path)
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in data.items()), encoding="utf-8")
    os.replace(tmp, path)
    return value
