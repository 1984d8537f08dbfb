"""`ulm cache ls|rm|prune`: what the model cache holds and removing from it.

The cache (`ulm.loading.cache`) has one entry per source file, holding everything derived from it: the
converted weights, the fast mode's tensors per scheme, the tokenizer files. Deleting any of it is safe: it
is rebuilt on the next load (which then takes seconds longer). No torch import: these commands start fast.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ulm.commands.generate import fail
from ulm.loading.messages import show

if TYPE_CHECKING:
    from ulm.loading.cache import Item

app = typer.Typer(
    help="""The model cache: one entry per model file, holding its converted weights, fast-mode tensors and
    tokenizer. Everything in it is rebuilt on demand, so removing entries is always safe.

    \b
    Examples:
      ulm cache ls                # entries: source file, state, contents, size
      ulm cache rm smollm2-135m   # a model's entry (name, .gguf path or entry id)
      ulm cache prune --dry-run   # what prune would remove
      ulm cache prune --all       # empty the cache
    """,
    no_args_is_help=True,
)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _ago(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{int(seconds // scale)} {unit} ago"
    return "just now"


def _source(item: Item) -> str:
    if item.source is None:
        return "-"
    return f"{item.source} (+{item.pieces - 1} more pieces)" if item.pieces > 1 else item.source


def _row(item: Item) -> dict[str, object]:
    return {"id": item.id, "path": str(item.path), "source": item.source, "pieces": item.pieces, "state": item.state,
            "holds": list(item.holds), "size_bytes": item.size_bytes,
            "last_used": datetime.fromtimestamp(item.last_used, UTC).isoformat(timespec="seconds")}


@app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """List the cache entries: source file, its state, what the entry holds, size and last use.

    State: current (the source is there, unchanged), source gone, source changed (the next load makes a new
    entry; `prune` removes this one), temp (a conversion's, running or crashed), unknown (damaged, or left by
    an older cache layout).

    \b
    Examples:
      ulm cache ls
      ulm cache ls --json | jq '.[].source'
    """
    from cb.paths import model_cache_dir
    from ulm.loading.cache import scan

    items = scan()
    if as_json:
        typer.echo(json.dumps([_row(item) for item in items], indent=2))
        return
    if not items:
        typer.echo(f"the model cache is empty ({model_cache_dir()})")
        return
    rows = [("entry", "state", "size", "last used", "holds", "source")]
    rows += [(item.id[:12], item.state, _size(item.size_bytes), _ago(time.time() - item.last_used),
              ", ".join(item.holds) or "-", _source(item)) for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:  # the source last, never cut; a file name's control characters shown as escapes
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + show(row[5]))
    typer.echo(f"{len(items)} in {model_cache_dir()}, {_size(sum(i.size_bytes for i in items))}")


REFS = typer.Argument(..., metavar="REF|ENTRY...", help="A model (short name or .gguf path, also of a file since "
                      "deleted) or an entry id (or its first 4+ characters, as `ls` shows it).")


@app.command("rm")
def rm(refs: list[str] = REFS) -> None:
    """Remove the cache entries of models or entry ids. The next load of such a model converts it again.

    \b
    Examples:
      ulm cache rm smollm2-135m
      ulm cache rm ~/models/qwen2-0.5b-q4_1.gguf
      ulm cache rm 3f2a9c1b
    """
    from ulm.loading.cache import scan

    items = scan(check_sources=False)
    chosen = {item.id: item for ref in refs for item in _matches(ref, items)}
    for item in chosen.values():
        _remove(item)
        typer.echo(f"removed {item.id[:12]} ({_size(item.size_bytes)}, {show(_source(item))})")


def _remove(item: Item) -> None:
    from ulm.loading.cache import remove

    try:
        remove(item.path)
    except OSError as exc:
        fail(f"{item.path}: cannot remove it: {exc.strerror or exc}")


def _matches(ref: str, items: list[Item]) -> list[Item]:
    """The items `ref` names: an entry id or a unique prefix of one (4+ characters), else every entry made
    from the file `ref` is or resolves to; exits with one error line when there is none."""
    from ulm.registry import ModelNotFoundError, resolve

    by_id = [item for item in items if item.id == ref or (len(ref) >= 4 and item.id.startswith(ref))]
    if len(by_id) > 1:
        fail(f"'{ref}' starts {len(by_id)} entry ids; give more of it (see `ulm cache ls`)")
    if by_id:
        return by_id
    paths = {str(Path(ref).expanduser().resolve())}
    with contextlib.suppress(ModelNotFoundError):
        paths.add(str(resolve(ref).path.resolve()))
    found = [item for item in items if item.source in paths]
    if not found:
        fail(f"no cache entry for '{ref}' (see `ulm cache ls`; HF directories are read in place, never cached)")
    return found


@app.command("prune")
def prune(everything: bool = typer.Option(False, "--all", help="Remove every entry, not only the stale ones."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed.")) -> None:
    """Remove the entries whose source file is gone or changed, unknown dirs and the temp dirs of crashed
    conversions (untouched for an hour); with --all, everything.

    \b
    Examples:
      ulm cache prune --dry-run
      ulm cache prune
      ulm cache prune --all
    """
    from ulm.loading.cache import prunable, scan

    doomed = prunable(scan(), everything)
    if not doomed:
        typer.echo("nothing to prune")
        return
    for item in doomed:
        if not dry_run:
            _remove(item)
        typer.echo(f"{'would remove' if dry_run else 'removed'} {item.id[:12]} {item.state} "
                   f"({_size(item.size_bytes)}, {show(_source(item))})")
    total = _size(sum(item.size_bytes for item in doomed))
    typer.echo(f"{'would free' if dry_run else 'freed'} {total} in {len(doomed)} item{'s' * (len(doomed) != 1)}")
