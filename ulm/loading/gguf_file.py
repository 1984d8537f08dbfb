"""A GGUF file's structure read from any byte buffer: a memory-mapped file, or the mapped parts of a model
carried in several wheels (`ulm.loading.parts`), which are never joined into one file on disk.

    gf = GGUFFile.open(path)                  # or GGUFFile(buffer, where="qwen2.5-coder-1.5b")
    gf.fields["general.architecture"]         # 'qwen2': str, int, float, bool, list of str, or a numpy array
    gf.file_backed                            # True: data maps files (pages droppable: ulm.kquant.release_pages)
    t = gf.tensor("token_embd.weight")        # .name .tensor_type .shape (GGUF order) .n_elements .n_bytes .data

The format (v2 and v3, little-endian): magic "GGUF", version u32, tensor count u64, metadata count u64; each
metadata entry a string key, a u32 value type and the value (arrays: item type u32, count u64, items);
each tensor's info (name, dims u32 + u64 each, GGML type u32, offset u64); then, aligned to
`general.alignment` (default 32), the tensor data. A tensor's `data` is a view into the buffer shaped as
gguf.GGUFReader shapes it (floats by element, quantised types as uint8 [rows, row bytes]): no copy.

Errors (bad magic, an unknown version or type, a count or offset past the end) raise ValueError naming what
is wrong; the loader turns them into one ModelLoadError line. This reader parses the embedded model's
metadata (a 49k-token vocabulary) several times faster than gguf.GGUFReader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# metadata value types: code → (struct format, numpy dtype) for the fixed-size ones
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"), 1: ("<b", "<i1"), 2: ("<H", "<u2"), 3: ("<h", "<i2"), 4: ("<I", "<u4"), 5: ("<i", "<i4"),
    6: ("<f", "<f4"), 7: ("<?", "?"), 10: ("<Q", "<u8"), 11: ("<q", "<i8"), 12: ("<d", "<f8"),
}
STRING, ARRAY = 8, 9
_FLOAT_DTYPES = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
                 GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
                 GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
                 GGMLQuantizationType.I64: np.int64}


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor of a GGUF file: shape in GGUF order (fastest dim first), data a view into the buffer."""

    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    offset: int  # absolute offset of its data in the buffer
    data: np.ndarray


class _Cursor:
    """Sequential little-endian reads from a byte buffer, each bounds-checked."""

    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"truncated at byte {self.pos} (needs {n} more bytes, file has {len(self.buf)})")
        view = self.buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError(f"truncated at byte {self.pos}")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def strings(self, count: int) -> list[str]:
        buf, pos, end, out = self.buf, self.pos, len(self.buf), []
        unpack = struct.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise ValueError(f"truncated string array at byte {pos}")
            (n,) = unpack("<Q", buf, pos)
            pos += 8
            if pos + n > end:
                raise ValueError(f"truncated string array at byte {pos}")
            out.append(bytes(buf[pos : pos + n]).decode("utf-8", errors="replace"))
            pos += n
        self.pos = pos
        return out


class GGUFFile:
    """The metadata and tensor index of a GGUF held in `data` (uint8, 1-D); see the module docstring."""

    def __init__(self, data: np.ndarray, where: str = "GGUF", file_backed: bool = False) -> None:
        self.data, self.where = data, where
        self.file_backed = file_backed  # data is a private mapping of files, never written (see release_pages)
        self.fields: dict[str, Any] = {}
        self.field_types: dict[str, tuple[int, int | None]] = {}  # key → (value type, array item type)
        cur = _Cursor(memoryview(data).cast("B"))
        if bytes(cur.take(4)) != MAGIC:
            raise ValueError("GGUF magic invalid (not a GGUF file)")
        self.version = cur.unpack("<I")
        if self.version not in VERSIONS:
            raise ValueError(f"GGUF version {self.version} is not supported (supported: 2, 3)")
        n_tensors, n_fields = cur.unpack("<Q"), cur.unpack("<Q")
        if n_tensors > len(data) or n_fields > len(data):
            raise ValueError(f"implausible counts ({n_tensors} tensors, {n_fields} metadata entries)")
        for _ in range(n_fields):
            key = cur.string()
            kind = cur.unpack("<I")
            self.fields[key], item = self._value(cur, kind)
            self.field_types[key] = (kind, item)
        infos = [self._tensor_info(cur) for _ in range(n_tensors)]
        alignment = int(self.fields.get("general.alignment", DEFAULT_ALIGNMENT))
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"general.alignment {alignment} is not a power of two")
        self.data_offset = -(-cur.pos // alignment) * alignment
        self.tensors = [self._tensor(*info) for info in infos]
        self._by_name = {t.name: t for t in self.tensors}
        if len(self._by_name) != len(self.tensors):
            raise ValueError("duplicated tensor names")

    @classmethod
    def open(cls, path: Path) -> GGUFFile:
        """A GGUF file, memory-mapped copy-on-write (writable views; the file is never changed)."""
        return cls(np.memmap(path, mode="c"), str(path), file_backed=True)

    def tensor(self, name: str) -> GGUFTensorInfo | None:
        return self._by_name.get(name)

    def _value(self, cur: _Cursor, kind: int) -> tuple[Any, int | None]:
        if kind in _SCALARS:
            return cur.unpack(_SCALARS[kind][0]), None
        if kind == STRING:
            return cur.string(), None
        if kind != ARRAY:
            raise ValueError(f"unknown metadata value type {kind}")
        item, count = cur.unpack("<I"), cur.unpack("<Q")
        if item == STRING:
            return cur.strings(count), item
        if item not in _SCALARS:
            raise ValueError(f"unsupported metadata array item type {item}")
        dtype = np.dtype(_SCALARS[item][1])
        raw = cur.take(count * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype), item

    def _tensor_info(self, cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
        name = cur.string()
        n_dims = cur.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        dims = tuple(cur.unpack("<Q") for _ in range(n_dims))
        return name, dims, cur.unpack("<I"), cur.unpack("<Q")

    def _tensor(self, name: str, dims: tuple[int, ...], raw_type: int, offset: int) -> GGUFTensorInfo:
        try:
            kind = GGMLQuantizationType(raw_type)
        except ValueError:
            raise ValueError(f"tensor {name!r} has unknown GGML type {raw_type}") from None
        block, size = GGML_QUANT_SIZES[kind]
        n = int(np.prod(dims, dtype=np.int64))
        if dims[0] % block:
            raise ValueError(f"tensor {name!r}: {dims[0]} columns are not whole {kind.name} blocks")
        n_bytes = n // block * size
        start = self.data_offset + offset
        if start + n_bytes > len(self.data):
            raise ValueError(f"tensor {name!r} is cut short (file truncated or corrupted)")
        flat = self.data[start : start + n_bytes]
        shape = tuple(reversed(dims))
        if kind in _FLOAT_DTYPES:
            view = flat.view(_FLOAT_DTYPES[kind]).reshape(shape)
        else:
            view = flat.reshape(*shape[:-1], shape[-1] // block * size)  # uint8 [rows..., row bytes]
        return GGUFTensorInfo(name, kind, dims, n, n_bytes, start, view)


def write_metadata_only(gf: GGUFFile, out: Path) -> None:
    """A GGUF holding `gf`'s metadata and no tensors: what reading a tokenizer from GGUF metadata with
    transformers (which opens a path) needs, for a model whose bytes are not one file."""
    from gguf import GGUFValueType, GGUFWriter

    arch = str(gf.fields.get("general.architecture", "llama"))
    writer = GGUFWriter(out, arch)
    for key, value in gf.fields.items():
        if key == "general.architecture":
            continue  # the writer adds it
        kind, item = gf.field_types[key]
        writer.add_key_value(key, value.tolist() if isinstance(value, np.ndarray) else value, GGUFValueType(kind),
                             None if item is None else GGUFValueType(item))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
