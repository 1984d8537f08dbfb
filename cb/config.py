"""cb's settings, layered from lowest to highest precedence:

    defaults  <  OPENAI_API_KEY / OPENAI_BASE_URL (fallbacks, as other OpenAI clients read them)
              <  user config (TOML at cb.paths.config_file())  <  project config (.cb.toml at the project root)
              <  CB_* environment variables (CB_MODEL, CB_BASE_URL, …)  <  command-line flags

Every key is one typed field of the frozen `Settings` (name, type, default, help, and the fallback env var
of the two keys that have one; its own env var is CB_<NAME>); `KEYS`, the coercion of strings and
`cb config show` are derived from those fields. `load()` returns a `Settings` that also remembers where each
value came from (`cb config show` prints it). Model aliases live in the config files' `[aliases]` table
(project over user) and resolve wherever a model name is set, whichever layer sets it.

Reading is stdlib only (tomllib), so any command may import this module; a file holding a key that others
can read gets one warning line (cb.private). Writing (`set_value`, `set_alias`) edits the file with tomlkit,
keeping its comments and layout, and replaces it atomically with mode 0600.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from cb import paths
from cb.private import warn_if_readable, write_private

PROJECT_FILE = ".cb.toml"
# The local server's model unless one is set: the coder model `make run` installs (its CODER_MODEL), chosen by
# `cb bench edits` on the held-out split (README: "The default model").
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
ALIASES = "aliases"  # the config files' table of model aliases
ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _key(default: Any, help: str, fallback_env: str = "", choices: tuple[str, ...] = (), minimum: int | None = None
         ) -> Any:
    """A config key: a field of Settings with its default, the help `cb config` shows and, for a key other
    clients also read from the environment, that variable (used when no cb layer sets the key); `choices`
    (the only values a string key takes) and `minimum` (of a number) are checked when a value is set."""
    return field(default=default, metadata={"help": help, "fallback_env": fallback_env, "choices": choices,
                                            "minimum": minimum})


@dataclass(frozen=True)
class Settings:
    """Resolved settings, one typed field per config key (the table of keys); `source[key]` says which layer
    set each value, `project_root` is where the project config was looked for."""

    base_url: str = _key("", "OpenAI-compatible API base URL, e.g. http://127.0.0.1:8080/v1; empty = the local "
                         "ulm serve", fallback_env="OPENAI_BASE_URL")
    api_key: str = _key("", "API key sent as a Bearer token (empty = none)", fallback_env="OPENAI_API_KEY")
    model: str = _key(DEFAULT_MODEL, "for the local server, the model it loads (`ulm models` lists them); with "
                      "base_url, unset = the server's first")
    temperature: float = _key(0.2, "sampling temperature")
    max_tokens: int = _key(1024, "most tokens per answer (up to a quarter of the context is kept free for it)")
    context_length: int = _key(0, "context window in tokens; 0 = ask the server")
    timeout: float = _key(120.0, "seconds to wait for the server to connect, answer, or send the next chunk")
    server_port: int = _key(0, "port of the local ulm serve; 0 = pick a free one at start")
    server_args: str = _key("--mode fast", "arguments for the local `ulm serve`, e.g. \"--mode exact --ctx 4096\" "
                            "(fast: int4 weights, ~5x the fp32 decode speed); changing them restarts it")
    server_start_timeout: float = _key(180.0, "seconds to wait for the local server to become healthy")
    system_prompt: str = _key("", "extra instructions appended to cb's system prompt")
    instruction_files: str = _key("AGENTS.md CONVENTIONS.md", "files at the project root always in the context, "
                                  "like open files (space-separated; empty = none)")
    grammar: str = _key("auto", "constrain answers to edit blocks about the open files: auto (when the server is "
                        "ulm serve with grammar support), on (always send the grammar), off",
                        choices=("auto", "on", "off"))
    edit_retries: int = _key(1, "when an answer's edits cannot be applied, send the errors back to the model and use "
                             "its next answer, at most this many times (0 = off)", minimum=0)
    tab_lines: int = _key(40, "lines of each open agentshell tab's output given to the model")
    code_theme: str = _key("monokai", "Pygments theme for code blocks in answers")
    source: Mapping[str, str] = field(default_factory=dict, compare=False)
    project_root: Path = field(default_factory=Path.cwd)
    aliases: Mapping[str, str] = field(default_factory=dict)

    def replaced(self, layer: str, **values: Any) -> Settings:
        """These settings with `values` set (coerced to their keys' types) by `layer`; a model alias resolves
        to its model (the source then names the alias too)."""
        coerced = {key: coerce(key, value) for key, value in values.items()}
        source = {**self.source, **dict.fromkeys(coerced, layer)}
        if coerced.get("model") in self.aliases:
            alias = coerced["model"]
            coerced["model"] = self.aliases[alias]
            source["model"] = f"{layer}, alias {alias}"
        return replace(self, **coerced, source=source)


@dataclass(frozen=True)
class Key:
    """One config key, derived from its Settings field."""

    name: str
    type: type
    default: Any
    help: str
    fallback_env: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None

    @property
    def env(self) -> str:
        return f"CB_{self.name.upper()}"


_TYPES = get_type_hints(Settings)
KEYS: dict[str, Key] = {f.name: Key(f.name, _TYPES[f.name], f.default, f.metadata["help"], f.metadata["fallback_env"],
                            f.metadata["choices"], f.metadata["minimum"])
                        for f in fields(Settings) if "help" in f.metadata}


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line for the user."""


def coerce(key: str, value: Any) -> Any:
    """Convert `value` (a string from env/flags, or a TOML value) to the key's type and check it against
    the key's choices or minimum; raise ConfigError."""
    if key not in KEYS:
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(KEYS)}")
    spec = KEYS[key]
    converted = _converted(key, spec.type, value)
    if spec.choices and converted not in spec.choices:
        raise ConfigError(f"{key} must be one of {', '.join(spec.choices)}, not {value!r}")
    if spec.minimum is not None and converted < spec.minimum:
        raise ConfigError(f"{key} must be at least {spec.minimum}, not {value!r}")
    return converted


def _converted(key: str, kind: type, value: Any) -> Any:
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
    """Read one config file: its keys, coerced, and its `aliases` table (name -> model) when it has one.

    A missing file is empty, a broken one a ConfigError naming it; a key in a file others can read is warned of.
    """
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
    if data.get("api_key"):
        warn_if_readable(path, "an API key")
    aliases = data.pop(ALIASES, {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) and v for v in aliases.values()):
        raise ConfigError(f"{path}: [{ALIASES}] must map names to model names, e.g. fast = \"qwen2.5-coder-0.5b\"")
    values = {key: coerce(key, value) for key, value in data.items()}
    return {**values, ALIASES: aliases} if aliases else values


def load(flags: Mapping[str, Any] | None = None, cwd: Path | None = None) -> Settings:
    """Resolve every key through the layers; `flags` holds values given on the command line (None = unset)."""
    root = project_root(cwd)
    user, project = read_toml(paths.config_file()), read_toml(root / PROJECT_FILE)
    aliases = {**user.pop(ALIASES, {}), **project.pop(ALIASES, {})}
    settings = Settings(source=dict.fromkeys(KEYS, "default"), project_root=root, aliases=aliases)
    layers: list[tuple[str, Mapping[str, Any]]] = [
        *((f"env {k.fallback_env}", {k.name: os.environ[k.fallback_env]}) for k in KEYS.values()
          if k.fallback_env and os.environ.get(k.fallback_env, "").strip()),
        (str(paths.config_file()), user),
        (str(root / PROJECT_FILE), project),
        *((f"env {k.env}", {k.name: os.environ[k.env]}) for k in KEYS.values() if k.env in os.environ),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    for layer, values in layers:
        settings = settings.replaced(layer, **values)
    return settings


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    """Apply `change` to the TOML document at `path` (created if missing), keeping its comments and layout;
    the file is replaced atomically with mode 0600 (cb.private.write_private)."""
    read_toml(path)  # a broken file is a ConfigError naming it, before anything is written
    import tomlkit  # only the commands that write config import it
    from tomlkit.exceptions import TOMLKitError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        document = tomlkit.parse(text)
        change(document)
        updated = tomlkit.dumps(document)
    except TOMLKitError as exc:
        raise ConfigError(f"cannot update config file {path}: {exc}") from None
    try:
        write_private(path, updated)
    except OSError as exc:
        raise ConfigError(f"cannot write config file {path}: {exc}") from None


def set_value(key: str, raw: str, path: Path) -> Any:
    """Set `key` in the config file at `path` (created if missing), keeping the rest of it; return the value."""
    value = coerce(key, raw)

    def change(document: Any) -> None:
        document[key] = value

    _edit(path, change)
    return value


def set_alias(name: str, model: str | None, path: Path) -> bool:
    """Make `name` an alias of `model` in the config file at `path` (None: remove it); False when there was
    no such alias to remove."""
    if not ALIAS_NAME.fullmatch(name):
        raise ConfigError(f"bad alias name {name!r}: use letters, digits and . _ : - (starting with a letter or "
                          "digit)")
    if model is not None and not model.strip():
        raise ConfigError("an alias needs a model name, e.g. cb models alias fast qwen2.5-coder-0.5b")
    if model is None and name not in read_toml(path).get(ALIASES, {}):
        return False

    def change(document: Any) -> None:
        import tomlkit

        if model is None:
            del document[ALIASES][name]
            if not document[ALIASES]:
                del document[ALIASES]
        else:
            if ALIASES not in document:
                document.add(ALIASES, tomlkit.table())
            document[ALIASES][name] = model.strip()

    _edit(path, change)
    return True
