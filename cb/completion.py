"""Shell completion: the scripts `cb completion bash|zsh|fish` prints, and the answers they ask cb for.

The scripts are fixed text (printing one imports nothing beyond this module). At Tab time the shell runs

    _CB_COMPLETE=<shell> cb WORD... CURRENT     (the words typed after `cb`, then the one being completed)

and `cb.cli.main` hands those words to `complete()` before the app parses anything. It walks cb's command
tree the way cb would route the words (a first word that is no command is a question for `ask`) and prints
one candidate per line, matching CURRENT:

    a word starting with "-"        the options of the command reached (at the root: cb's and `ask`'s)
    after -m/--model                the model aliases (cb models alias)
    after a group (session, ...)    its sub-commands; after `cb`, the commands
    anywhere else                   nothing: the shell completes file names (bash -o default, zsh _files,
                                    fish __fish_complete_path)

bash gets bare names; zsh `name:description` and fish `name<TAB>description` (the description costs loading
the commands' modules, as `cb --help` does; bash never pays it).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

SHELLS = ("bash", "zsh", "fish")
MODEL_OPTIONS = ("-m", "--model")

_SCRIPTS = {
    "bash": """\
# cb completion for bash: eval "$(cb completion bash)" in ~/.bashrc
_cb_completion() {
    local IFS=$'\\n'
    COMPREPLY=($(_CB_COMPLETE=bash "${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _cb_completion cb
""",
    "zsh": """\
#compdef cb
# cb completion for zsh: eval "$(cb completion zsh)" in ~/.zshrc (after compinit), or save as _cb in $fpath
_cb() {
    local -a candidates
    candidates=("${(@f)$(_CB_COMPLETE=zsh "${words[1]}" "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if [[ -n "${candidates[1]}" ]]; then
        _describe -t commands cb candidates
    else
        _files
    fi
}
if [[ "${funcstack[1]}" == "_cb" ]]; then
    _cb "$@"
else
    compdef _cb cb
fi
""",
    "fish": """\
# cb completion for fish: cb completion fish > ~/.config/fish/completions/cb.fish
function __cb_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l program $tokens[1]
    set -e tokens[1]
    set -l found (env _CB_COMPLETE=fish $program $tokens "$current" 2>/dev/null)
    if set -q found[1]
        printf '%s\\n' $found
    else
        __fish_complete_path "$current"
    end
end
complete -c cb -f -a '(__cb_complete)'
""",
}


def script(shell: str) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    return _SCRIPTS[shell]


def complete(root: Any, shell: str, words: list[str]) -> int:
    """Print the candidates for the last of `words` (see the module docstring); the exit status."""
    if shell not in SHELLS:
        sys.stderr.write(f"cb: no completion for shell {shell!r}; use one of: {', '.join(SHELLS)}\n")
        return 2
    *typed, current = words or [""]
    ctx = root.make_context("cb", [], resilient_parsing=True)
    command, ctx, pending = _reached(root, ctx, typed)
    found: list[tuple[str, str | None]] = []  # (name, help); None: a sub-command's, looked up when shown
    if pending is not None:  # the value of an option
        found = _aliases() if pending in MODEL_OPTIONS else []
    elif current.startswith("-"):
        found = _options(command, ctx)
        if command is root:
            found += _options(*_enter(root, ctx, "ask"))
    elif hasattr(command, "list_commands"):
        found = [(name, None) for name in command.list_commands(ctx)]
    lines: dict[str, str] = {}
    for name, help_text in found:
        if name.startswith(current) and name not in lines:
            if help_text is None and shell != "bash":
                help_text = command.get_command(ctx, name).get_short_help_str(limit=70)
            lines[name] = _line(shell, name, help_text or "")
    sys.stdout.write("".join(f"{line}\n" for line in lines.values()))
    return 0


def _enter(group: Any, ctx: Any, name: str) -> tuple[Any, Any]:
    """The sub-command `name` of `group` and a context for it (parsing nothing)."""
    sub = group.get_command(ctx, name)
    return sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True)


def _reached(root: Any, ctx: Any, typed: list[str]) -> tuple[Any, Any, str | None]:
    """The command the typed words reach, its context, and the option still waiting for its value (if any)."""
    command, pending = root, None
    for word in typed:
        if pending is not None:
            pending = None
            continue
        if command is root and word not in root.list_commands(ctx):  # a question, or its options: cb ask's
            command, ctx = _enter(root, ctx, "ask")
        elif hasattr(command, "list_commands") and not word.startswith("-"):
            if word not in command.list_commands(ctx):
                break
            command, ctx = _enter(command, ctx, word)
            continue
        pending = _waiting(command, ctx, word)
    return command, ctx, pending


def _waiting(command: Any, ctx: Any, word: str) -> str | None:
    """`word` when it is an option of `command` that takes a value given as the next word, else None."""
    name, eq, _ = word.partition("=")
    if eq or not word.startswith("-"):
        return None
    for param in command.get_params(ctx):
        if param.param_type_name == "option" and name in (*param.opts, *param.secondary_opts):
            return None if param.is_flag or param.count else name
    return None


def _options(command: Any, ctx: Any) -> list[tuple[str, str | None]]:
    return [(name, _first_line(param.help)) for param in command.get_params(ctx)
            if param.param_type_name == "option" and not param.hidden
            for name in (*param.opts, *param.secondary_opts)]


def _aliases() -> list[tuple[str, str | None]]:
    from cb import config

    with contextlib.suppress(config.ConfigError, OSError):
        return [(name, model) for name, model in config.load().aliases.items()]
    return []


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]


def _line(shell: str, name: str, help_text: str) -> str:
    if shell == "bash":
        return name
    if shell == "zsh":
        escaped = name.replace(":", "\\:")
        return f"{escaped}:{help_text}" if help_text else escaped
    return f"{name}\t{help_text}" if help_text else name
