"""`ulm data build`'s pipeline: sources → documents → de-duplicated, split, tokenized → shards + manifest.

    manifest = build_dataset(["src/", "chats.jsonl"], Path("data"), BuildOptions(tokenizer="smollm2-135m"))

1. Load the tokenizer (DataError when REF names none) and resolve every SOURCE (DataError for one that
   names nothing readable) before anything is written.
2. Read the files in order; each yields documents or a skip reason (binary, empty, not UTF-8, too large,
   symlink). A document whose content hash was seen before is a duplicate and dropped.
3. Split by content hash (see ulm/data/__init__.py), tokenize in batches (texts through the fast
   tokenizer's batch encoder, chats through `chat.encode_chat_masked`), append the separator, write.
4. Everything is written into a temp dir beside OUT and renamed into place at the end, so a failed build
   leaves nothing behind and OUT is never half a dataset. An existing OUT is replaced only with
   `overwrite` and only when it is a dataset or empty.

Progress goes to a `Reporter` (files known up front; each file read, with its token count).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ulm.data.chat import encode_chat_masked
from ulm.data.documents import Document, Skipped, read_documents
from ulm.data.errors import DataError
from ulm.data.manifest import DOCUMENTS, FORMAT_VERSION, MANIFEST, SPLITS, TOKENIZER_DIR, sha256_file, write_manifest
from ulm.data.shards import ShardWriter
from ulm.data.sources import Source, resolve_sources
from ulm.data.tokenizers import load_data_tokenizer, separator_id, token_dtype, tokenizer_id

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BATCH_DOCS = 256


@dataclass(frozen=True)
class BuildOptions:
    """The settings of one build (the CLI's flags)."""

    tokenizer: str = "smollm2-135m"
    val_fraction: float = 0.05
    shard_tokens: int = 1 << 25  # 64 MiB of uint16 per shard
    max_file_bytes: int = 8 << 20
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    overwrite: bool = False
    command: str = ""


class Reporter(Protocol):
    """Receives the build's progress."""

    def start(self, files: int) -> None: ...

    def advance(self, files: int, tokens: int) -> None: ...

    def finish(self) -> None: ...


class _Quiet:
    def start(self, files: int) -> None:
        pass

    def advance(self, files: int, tokens: int) -> None:
        pass

    def finish(self) -> None:
        pass


def split_of(content_hash: str, val_fraction: float) -> str:
    """'val' when the hash, as a fraction of 2^64, is below val_fraction; else 'train'."""
    return "val" if int(content_hash[:16], 16) / 2**64 < val_fraction else "train"


@dataclass
class _SplitStats:
    documents: int = 0
    chat_documents: int = 0
    trained_tokens: int = 0


@dataclass
class _Build:
    """The state of one build while files are read."""

    tok: PreTrainedTokenizerFast
    options: BuildOptions
    out: Path
    sep: int
    writers: dict[str, ShardWriter]
    docs_fh: Any
    seen: set[str] = field(default_factory=set)
    stats: dict[str, _SplitStats] = field(default_factory=lambda: {s: _SplitStats() for s in SPLITS})
    per_source: list[Counter[str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: int = 0

    def encode(self, docs: Sequence[Document]) -> list[tuple[list[int], list[int]]]:
        """(ids, mask) per document, separator appended (mask 1 on text, assistant tokens only on chats)."""
        texts = [d.text for d in docs if d.kind == "text"]
        encoded = iter(self.tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
        out = []
        for d in docs:
            if d.kind == "text":
                ids = [*next(encoded).ids, self.sep]
                out.append((ids, [1] * len(ids)))
            else:
                where = f"{d.file.path}:{d.line}" if d.line else str(d.file.path)
                ids, mask = encode_chat_masked(self.tok, d.messages, where)
                out.append(([*ids, self.sep], [*mask, 0]))
        return out

    def write(self, docs: Sequence[Document]) -> int:
        """Tokenize and write a batch of new documents; the number of tokens written."""
        total = 0
        for doc, (ids, mask) in zip(docs, self.encode(docs), strict=True):
            split = split_of(doc.hash, self.options.val_fraction)
            self.writers[split].add(ids, mask)
            stats = self.stats[split]
            stats.documents += 1
            stats.chat_documents += doc.kind == "chat"
            stats.trained_tokens += sum(mask)
            self.per_source[doc.file.source]["tokens"] += len(ids)
            total += len(ids)
            record = {"hash": doc.hash, "source": doc.file.source, "path": doc.file.rel, "line": doc.line,
                      "kind": doc.kind, "split": split, "tokens": len(ids)}
            self.docs_fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return total

    def read_source(self, source: Source, reporter: Reporter) -> None:
        counts = self.per_source[source.files[0].source]
        pending: list[Document] = []
        pending_files = 0
        for file in source.files:
            counts["files"] += 1
            result = read_documents(file, self.options.max_file_bytes)
            if isinstance(result, Skipped):
                counts["skipped"] += 1
                self.skipped.append({"path": str(file.path), "reason": result.reason})
            else:
                for doc in result:
                    if doc.hash in self.seen:
                        counts["duplicates"] += 1
                        self.duplicates += 1
                        continue
                    self.seen.add(doc.hash)
                    counts["documents"] += 1
                    pending.append(doc)
            pending_files += 1
            if len(pending) >= BATCH_DOCS:
                reporter.advance(pending_files, self.write(pending))
                pending, pending_files = [], 0
        reporter.advance(pending_files, self.write(pending))


def _prepare_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: exists and is not empty (use --overwrite to replace a dataset)")
        if not (out / MANIFEST).is_file():
            raise DataError(f"{out}: not a dataset, refusing to replace it")


def _empty_result_error(build: _Build) -> DataError:
    reasons = Counter(s["reason"] for s in build.skipped)
    detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
    if build.duplicates:
        detail = ", ".join(filter(None, [detail, f"{build.duplicates} duplicates"]))
    return DataError("no documents to train on" + (f": every file was left out ({detail})" if detail else ""))


def build_dataset(sources: Sequence[str], out: Path, options: BuildOptions,
                  reporter: Reporter | None = None) -> dict[str, Any]:
    """Build a dataset from `sources` into `out`; the manifest written (see ulm/data/manifest.py)."""
    reporter = reporter or _Quiet()
    if not 0 <= options.val_fraction < 1:
        raise DataError(f"--val-fraction must be in [0, 1), got {options.val_fraction}")
    if options.shard_tokens <= 0:
        raise DataError(f"--shard-tokens must be positive, got {options.shard_tokens}")
    _prepare_out(out, options.overwrite)
    resolved = resolve_sources(sources, options.include, options.exclude)
    tok = load_data_tokenizer(options.tokenizer)
    dtype = token_dtype(len(tok))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dataset gets the usual permissions
    try:
        writers = {s: ShardWriter(tmp, s, dtype, options.shard_tokens, with_mask=True) for s in SPLITS}
        with open(tmp / DOCUMENTS, "w", encoding="utf-8") as docs_fh:
            build = _Build(tok, options, tmp, separator_id(tok), writers, docs_fh,
                           per_source=[Counter() for _ in resolved])
            reporter.start(sum(len(s.files) for s in resolved))
            try:
                for source in resolved:
                    build.read_source(source, reporter)
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            finally:
                reporter.finish()
        shards = {s: w.close() for s, w in writers.items()}
        if not build.seen:
            raise _empty_result_error(build)
        if not build.stats["train"].documents:
            raise DataError(f"the train split is empty: all {build.stats['val'].documents} documents went to "
                            "validation; lower --val-fraction")
        has_mask = any(st.chat_documents for st in build.stats.values())
        if not has_mask:
            for split_shards in shards.values():
                for shard in split_shards:
                    (tmp / str(shard.mask_file)).unlink()
                    shard.mask_file = shard.mask_sha256 = None
        tok.save_pretrained(str(tmp / TOKENIZER_DIR))
        manifest = _manifest(build, resolved, shards, dtype.name, len(tok), has_mask, tmp)
        write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _manifest(build: _Build, resolved: Sequence[Source], shards: dict[str, list[Any]], dtype: str,
              vocab_size: int, has_mask: bool, tmp: Path) -> dict[str, Any]:
    options = build.options
    splits = {}
    for split in SPLITS:
        st, writer = build.stats[split], build.writers[split]
        splits[split] = {"documents": st.documents, "chat_documents": st.chat_documents, "tokens": writer.tokens,
                         "trained_tokens": st.trained_tokens, "index": f"{split}.idx",
                         "shards": [s.to_dict() for s in shards[split]]}
    sources = [{"arg": s.arg, "kind": s.kind, "files": c["files"], "documents": c["documents"],
                "duplicates": c["duplicates"], "skipped": c["skipped"], "tokens": c["tokens"]}
               for s, c in zip(resolved, build.per_source, strict=True)]
    return {
        "format_version": FORMAT_VERSION,
        "command": options.command,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tokenizer": {"ref": options.tokenizer, "id": tokenizer_id(build.tok), "vocab_size": vocab_size,
                      "separator_id": build.sep, "bos_id": build.tok.bos_token_id, "eos_id": build.tok.eos_token_id,
                      "dir": TOKENIZER_DIR},
        "token_dtype": dtype,
        "val_fraction": options.val_fraction,
        "shard_tokens": options.shard_tokens,
        "max_file_bytes": options.max_file_bytes,
        "include": list(options.include),
        "exclude": list(options.exclude),
        "has_mask": has_mask,
        "sources": sources,
        "splits": splits,
        "documents": {"file": DOCUMENTS, "sha256": sha256_file(tmp / DOCUMENTS)},
        "duplicates": build.duplicates,
        "skipped": build.skipped,
    }
