"""`ulm data build` and `ulm data info`: build a token dataset from files, directories, globs, git repositories
and JSONL chat transcripts, and describe one (see ulm/data/)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer

from ulm.commands.generate import user_errors

app = typer.Typer(help="Build and inspect token datasets for `ulm train`.", no_args_is_help=True)

SOURCES = typer.Argument(..., help="Files, directories, globs (quote them: 'src/**/*.py'), git work trees "
                         "(.gitignore respected) and .jsonl files of chat transcripts.")
OUT = typer.Option(..., "--out", "-o", help="Directory to write the dataset into (new or empty).")
INCLUDE = typer.Option(None, "--include", help="Only files matching this glob (repeatable), e.g. '*.py'; matched "
                       "against the path and the file name.")
EXCLUDE = typer.Option(None, "--exclude", help="Leave out files matching this glob (repeatable).")
DATASET = typer.Argument(..., help="A dataset directory made by `ulm data build`.")


class RichReporter:
    """A rich progress bar on stderr (a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]reading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("files · {task.fields[tokens]:,} tokens"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.tokens = 0
        self.task: Any = None

    def start(self, files: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("read", total=files, tokens=0)

    def advance(self, files: int, tokens: int) -> None:
        self.tokens += tokens
        self.progress.update(self.task, advance=files, tokens=self.tokens)

    def finish(self) -> None:
        self.progress.stop()


class PlainReporter:
    """One progress line on stderr every few seconds and at the end (a pipe or a log file)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s, self.files, self.done, self.tokens = every_s, 0, 0, 0
        self.last = time.monotonic()

    def start(self, files: int) -> None:
        self.files = files
        typer.echo(f"reading {files} files", err=True)

    def advance(self, files: int, tokens: int) -> None:
        self.done += files
        self.tokens += tokens
        if time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            typer.echo(f"read {self.done}/{self.files} files, {self.tokens:,} tokens", err=True)

    def finish(self) -> None:
        typer.echo(f"read {self.done}/{self.files} files, {self.tokens:,} tokens", err=True)


def _summary(manifest: dict[str, Any], out: Path) -> str:
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    lines = [f"wrote {out}: {train['documents']} train documents ({train['tokens']:,} tokens), "
             f"{val['documents']} val ({val['tokens']:,} tokens); {manifest['duplicates']} duplicates dropped, "
             f"{len(manifest['skipped'])} files skipped"]
    if val["documents"] == 0 and manifest["val_fraction"] > 0:
        lines.append("note: the validation split is empty (few documents); raise --val-fraction for one")
    return "\n".join(lines)


@app.command("build")
def build(
    sources: list[str] = SOURCES,
    out: Path = OUT,
    tokenizer: str = typer.Option("smollm2-135m", "--tokenizer", "-t",
                                  help="Model name, .gguf file, HF directory or tokenizer directory."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", help="Share of documents held out for validation "
                                       "(chosen by content hash, so the split does not depend on order)."),
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
    max_file_mb: float = typer.Option(8.0, "--max-file-mb", min=0.001, help="Skip files larger than this."),
    shard_tokens: int = typer.Option(1 << 25, "--shard-tokens", min=1, help="Tokens per shard file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset at --out."),
) -> None:
    """Build a token dataset: read, de-duplicate, split, tokenize, write shards and a manifest.

    Text and code files become one document each (binary, empty, non-UTF-8 and oversized files are skipped
    and listed in the manifest). A .jsonl file holds one record per line: {"messages": [...]} (an OpenAI
    chat transcript, rendered with the tokenizer's chat template; a mask marks the assistant's tokens) or
    {"text": "..."}. Exact duplicates are dropped; the same inputs give byte-identical shards.

    \b
    Examples:
      ulm data build /usr/lib/python3.11/json /usr/lib/python3.11/email --out data/stdlib
      ulm data build ~/src/myrepo 'notes/**/*.md' chats.jsonl --out data/mix --val-fraction 0.02
      ulm data build ~/src/myrepo --include '*.py' --tokenizer ./Qwen2.5-0.5B --out data/qwen
    """
    from ulm.data.build import BuildOptions, build_dataset

    command = ["ulm", "data", "build", *sources, "--out", str(out), "--tokenizer", tokenizer,
               "--val-fraction", str(val_fraction), "--max-file-mb", str(max_file_mb), "--shard-tokens",
               str(shard_tokens)]
    command += [a for p in include or () for a in ("--include", p)]
    command += [a for p in exclude or () for a in ("--exclude", p)]
    options = BuildOptions(tokenizer=tokenizer, val_fraction=val_fraction, shard_tokens=shard_tokens,
                           max_file_bytes=int(max_file_mb * (1 << 20)), include=tuple(include or ()),
                           exclude=tuple(exclude or ()), overwrite=overwrite, command=shlex.join(command))
    reporter = RichReporter() if sys.stderr.isatty() else PlainReporter()
    with user_errors():
        manifest = build_dataset(sources, out, options, reporter)
    typer.echo(_summary(manifest, out))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _print_info(manifest: dict[str, Any], directory: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tok = manifest["tokenizer"]
    itemsize = 2 if manifest["token_dtype"] == "uint16" else 4
    console.print(f"[bold]{directory}[/bold]  format {manifest['format_version']}, built {manifest['created']}",
                  highlight=False)
    console.print(f"tokenizer {tok['ref']} ({tok['id']}, vocabulary {tok['vocab_size']}, separator id "
                  f"{tok['separator_id']}), tokens as {manifest['token_dtype']}"
                  + (", with assistant-token mask" if manifest["has_mask"] else ""), highlight=False)
    splits = Table(box=None, pad_edge=False)
    for col in ("split", "documents", "chats", "tokens", "trained tokens", "shards", "size"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    for name, s in manifest["splits"].items():
        splits.add_row(name, f"{s['documents']:,}", f"{s['chat_documents']:,}", f"{s['tokens']:,}",
                       f"{s['trained_tokens']:,}", str(len(s["shards"])), _human(s["tokens"] * itemsize))
    console.print(splits)
    sources = Table(box=None, pad_edge=False)
    for col in ("source", "kind", "files", "documents", "duplicates", "skipped", "tokens"):
        sources.add_column(col, justify="left" if col in ("source", "kind") else "right")
    for s in manifest["sources"]:
        sources.add_row(s["arg"], s["kind"], f"{s['files']:,}", f"{s['documents']:,}", f"{s['duplicates']:,}",
                        f"{s['skipped']:,}", f"{s['tokens']:,}")
    console.print(sources)
    console.print(f"command: {manifest['command']}", highlight=False, markup=False)


@app.command("info")
def info(
    directory: Path = DATASET,
    verify: bool = typer.Option(False, "--verify", help="Also check every shard's sha256 against the manifest."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Describe a dataset: tokenizer, splits (documents, tokens, shards), sources, and the command that built it.

    \b
    Examples:
      ulm data info data/stdlib
      ulm data info data/stdlib --verify --json
    """
    from ulm.data.manifest import check_files, read_manifest

    with user_errors():
        manifest = read_manifest(directory)
        check_files(directory, manifest, verify=verify)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
    else:
        _print_info(manifest, directory)
        if verify:
            typer.echo("every shard matches its sha256")
