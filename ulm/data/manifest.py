"""The manifest of a built dataset (`DIR/manifest.json`): what went in, with what tokenizer, what came out.

    format_version   FORMAT_VERSION; a reader refuses any other
    command          the `ulm data build` command line that made it
    created          UTC time (the one field that differs between two builds of the same inputs)
    tokenizer        ref (as given), id (`tokenizers.tokenizer_id`), vocab_size, separator_id, bos_id, eos_id,
                     dir ("tokenizer")
    token_dtype      "uint16" or "uint32"
    val_fraction, shard_tokens, max_file_bytes, include, exclude: the build's settings
    has_mask         True when .mask shards exist (the dataset holds chat transcripts)
    sources          per SOURCE argument: arg, kind, files, documents, duplicates, skipped, tokens
    splits           per split: documents, chat_documents, tokens, trained_tokens (mask 1), index file, shards
                     (file, tokens, sha256, mask_file, mask_sha256)
    documents        "documents.jsonl" and its sha256
    skipped          [{path, reason}] of files left out; duplicates: how many documents were dropped as such

`read_manifest(dir)` parses and checks the version; `check_files(dir, manifest, verify)` checks that every
shard is there with the size the manifest gives (and, with verify, its sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ulm.data.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically."""
    tmp = out / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a built dataset; DataError when there is none or it is of another format."""
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"{directory}: not a dataset (no {MANIFEST}; build one with `ulm data build`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: dataset format {version!r}, this µLM reads format {FORMAT_VERSION}; rebuild it")
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(directory: Path, manifest: dict[str, Any], verify: bool = False) -> None:
    """DataError naming the first shard that is missing, of the wrong size or (verify) content."""
    itemsize = np.dtype(manifest["token_dtype"]).itemsize
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            files = [(shard["file"], shard["tokens"] * itemsize, shard["sha256"])]
            if shard.get("mask_file"):
                files.append((shard["mask_file"], shard["tokens"], shard["mask_sha256"]))
            for name, size, digest in files:
                path = directory / name
                if not path.is_file():
                    raise DataError(f"{path}: missing (the dataset is incomplete; rebuild it)")
                if path.stat().st_size != size:
                    raise DataError(f"{path}: {path.stat().st_size} bytes, the manifest says {size}; rebuild it")
                if verify and sha256_file(path) != digest:
                    raise DataError(f"{path}: content differs from the manifest's sha256; rebuild it")
