"""Datasets for µLM training: `ulm data build` turns files, directories, globs, git repositories and JSONL
chat transcripts into token shards plus a manifest; `ulm data info` describes one; training reads it back.

Module layout (one job each; arrows are imports):

    errors.py      DataError: a one-line message naming the source, file or line at fault
    sources.py     SOURCE arguments → an ordered list of files (git ls-files in a work tree, sorted walks
                   elsewhere, globs, --include/--exclude); unreadable or empty sources are errors
    documents.py   a file → documents: text (UTF-8, binary and oversized files skipped with a reason) or the
                   records of a .jsonl file ({"messages": [...]} chat transcripts, {"text": ...}); content hashes
    tokenizers.py  --tokenizer REF → the HF tokenizer, its id (hash of its vocabulary, merges and template),
                   the document separator, the shard dtype (uint16 up to 65536 ids, else uint32)
    chat.py        a chat transcript → token ids and the assistant-token mask, from the chat template
    shards.py      ShardWriter: a split's token stream (and mask) as fixed-size raw memmap shards + a doc index
    manifest.py    the manifest (format version, sources, tokenizer id, splits, shard hashes, the command)
    build.py       the pipeline: list → read → de-duplicate (content hash) → split (content hash) → tokenize →
                   write; a Reporter receives progress
    dataset.py     open_dataset(DIR): a built dataset memory-mapped for training (tokens, mask, doc bounds)

The on-disk form (format version 1) of `ulm data build ... --out DIR`:

    DIR/manifest.json            see manifest.py
    DIR/documents.jsonl          one line per kept document: content hash, source, path, line, kind, split, tokens
    DIR/tokenizer/               the tokenizer's HF files (tokenizer.json, chat template): what training copies
    DIR/{split}-{k:06d}.bin      tokens, little-endian uint16 or uint32, at most `shard_tokens` per shard
    DIR/{split}-{k:06d}.mask     uint8 per token, 1 = trained on (assistant tokens of chats, every token of
                                 text), only when the dataset holds chat transcripts
    DIR/{split}.idx              uint64 [n_docs + 1]: each document's first token offset in the split's stream

Each document's tokens end with the separator token (`<|endoftext|>` when the vocabulary has it, else EOS).
Documents are kept in a fixed order (source argument order, then sorted path, then line), exact duplicates
(same content hash) are dropped after their first occurrence, and a document goes to the validation split
when its content hash, read as a fraction of 2^64, is below --val-fraction: the split does not depend on
order, and the same inputs give byte-identical shards.
"""
