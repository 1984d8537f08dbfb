"""Build and load µLM's kernel sources (SOURCES, one library) with the system C compiler, once per machine,
and hand out their functions.

The source is plain C (no torch headers): `cc -O3 -march=native -fopenmp -shared`, about 10 s once per
machine (-O2 builds in 2 s but runs the attention 2× and the unpacking 5× slower, measured). Its OpenMP
loops run on torch's own thread pool: torch ships libgomp.so.1 and loads it first, and the loader resolves
the library's libgomp.so.1 to that copy. The library is cached as `<cache>/kernels/ulm_kernels-<key>.so`,
where the key hashes the source, the flags, the compiler's version and the CPU's feature flags (a cache
dir shared by machines with different CPUs never runs code built for the other one). It is compiled into
a temp file and renamed, so concurrent first uses never load half a library; the build is an `ulm.progress`
stage (shown by the `ulm` commands and the server's /health).

`library()` returns the loaded `ctypes.CDLL`, or None when the native path is off: `ULM_NATIVE=0`, no C
compiler (`CC`, else cc/gcc/clang on PATH), or a failed build. The reason is logged once (logger `ulm`)
and every caller then runs its torch fallback, so a machine without a compiler is slower, never broken.
`ULM_KERNEL_DIR` overrides where the library is kept (the test suite shares one across its tests).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ulm import progress

HERE = Path(__file__).parent
SOURCES = (HERE / "ulm_kernels.c", HERE / "ulm_int4.c", HERE / "ulm_decode.c", HERE / "ulm_sample.c",
           HERE / "ulm_kquant.c", HERE / "ulm_kquant_mm.c")  # one library
HEADERS = (HERE / "ulm_bf16.h", HERE / "ulm_math.h", HERE / "ulm_kernels.h", HERE / "ulm_kquant.h",
           HERE / "ulm_kquant_layout.h")
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fopenmp")
_I64, _PTR, _F32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
# ulm_attend_*: q, qs_b, qs_h, k, ks_b, ks_h, ks_t, v, vs_b, vs_h, vs_t, out, spans, B, Hq, Hkv, hd, scale
ATTEND_ARGS = (_PTR, _I64, _I64, _PTR, _I64, _I64, _I64, _PTR, _I64, _I64, _I64, _PTR, _PTR, _I64, _I64, _I64, _I64,
               _F32)
# ulm_decode_layer_bf16: layer struct, meta, B, qkv, out
LAYER_ARGS = (_PTR, _PTR, _I64, _PTR, _PTR)
# ulm_dequant_int4_bf16_t: packed, scales_zeros, N, K, group, out
DEQUANT_ARGS = (_PTR, _PTR, _I64, _I64, _I64, _PTR)
# ulm_int4_vnni_mm: x, M, K, packed, scales_zeros, N, out, out_f32
INT4_MM_ARGS = (_PTR, _I64, _I64, _PTR, _PTR, _I64, _PTR, ctypes.c_int)
# ulm_kq_repack: type, rows, row_stride, N, K, tiles
KQ_REPACK_ARGS = (_I64, _PTR, _I64, _I64, _I64, _PTR)
# ulm_kq_dequant_rows: type, rows, row_stride, ids, n_ids, K, out
KQ_ROWS_ARGS = (_I64, _PTR, _I64, _PTR, _I64, _I64, _PTR)
# ulm_kq_mm: linear, x, x_f32, M, P (int16 rows), out, out_f32
KQ_MM_ARGS = (_PTR, _PTR, ctypes.c_int, _I64, _I64, _PTR, ctypes.c_int)
# ulm_refine_logits: logits, R, V, table, D, h, k, chunk
REFINE_ARGS = (_PTR, _I64, _I64, _PTR, _I64, _PTR, _I64, _I64)

log = logging.getLogger("ulm")


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform

        return platform.processor()


def _kernel_dir() -> Path:
    override = os.environ.get("ULM_KERNEL_DIR")
    if override:
        return Path(override)
    from cb.paths import cache_dir

    return cache_dir() / "kernels"


def _build(cc: str, target: Path) -> None:
    """Compile SOURCES into `target` (atomically); RuntimeError with the compiler's message on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {(done.stderr or done.stdout).strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    for name in ("ulm_attend_bf16", "ulm_attend_f32"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = ATTEND_ARGS, ctypes.c_int
    lib.ulm_decode_layer_bf16.argtypes, lib.ulm_decode_layer_bf16.restype = LAYER_ARGS, ctypes.c_int
    lib.ulm_dequant_int4_bf16_t.argtypes, lib.ulm_dequant_int4_bf16_t.restype = DEQUANT_ARGS, ctypes.c_int
    lib.ulm_silu_mul_bf16.argtypes, lib.ulm_silu_mul_bf16.restype = (_PTR, _I64, _I64, _PTR), None
    lib.ulm_rms_norm.argtypes, lib.ulm_rms_norm.restype = (_PTR, _I64, _I64, _PTR, _F32, _PTR, ctypes.c_int), None
    lib.ulm_refine_logits.argtypes, lib.ulm_refine_logits.restype = REFINE_ARGS, ctypes.c_int64
    lib.ulm_int4_vnni.argtypes, lib.ulm_int4_vnni.restype = (), ctypes.c_int
    for name in ("ulm_kq_block_size", "ulm_kq_block_bytes"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = (_I64,), _I64
    lib.ulm_kq_tile_bytes.argtypes, lib.ulm_kq_tile_bytes.restype = (_I64, _I64), _I64
    lib.ulm_kq_repack.argtypes, lib.ulm_kq_repack.restype = KQ_REPACK_ARGS, ctypes.c_int
    lib.ulm_kq_dequant_rows.argtypes, lib.ulm_kq_dequant_rows.restype = KQ_ROWS_ARGS, ctypes.c_int
    lib.ulm_kq_vnni.argtypes, lib.ulm_kq_vnni.restype = (), ctypes.c_int
    # ulm_sample_rows: logits, R, V, counts (or None), mask (or None), params, uniform, out
    lib.ulm_sample_rows.argtypes = (_PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR)
    lib.ulm_sample_rows.restype = ctypes.c_int
    if lib.ulm_int4_vnni():  # built for AVX-512 VNNI or AVX2: the int4 kernels of ulm_int4.c are in the library
        lib.ulm_int4_repack_vnni.argtypes, lib.ulm_int4_repack_vnni.restype = (_PTR, _I64, _I64, _I64), ctypes.c_int
        lib.ulm_int4_vnni_mm.argtypes, lib.ulm_int4_vnni_mm.restype = INT4_MM_ARGS, ctypes.c_int
        lib.ulm_dequant_int4_vnni_bf16_t.argtypes = (_PTR, _PTR, _I64, _I64, _PTR)
        lib.ulm_dequant_int4_vnni_bf16_t.restype = None
        # ulm_decode_blocks_bf16: blocks, n_layers, D, F, eps, meta, B, decoded rows, x
        lib.ulm_decode_blocks_bf16.argtypes = (_PTR, _I64, _I64, _I64, _F32, _PTR, _I64, _I64, _PTR)
        lib.ulm_decode_blocks_bf16.restype = ctypes.c_int
    if lib.ulm_kq_vnni():  # the GGUF block-quant kernels of ulm_kquant_mm.c: linear descriptor, Wᵀ [K, N] bf16
        lib.ulm_kq_mm.argtypes, lib.ulm_kq_mm.restype = KQ_MM_ARGS, ctypes.c_int
        lib.ulm_kq_dequant_t.argtypes, lib.ulm_kq_dequant_t.restype = (_PTR, _I64, _I64, _PTR), ctypes.c_int
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The native kernels of this machine, built on first use; None when they cannot be had (see above)."""
    if os.environ.get("ULM_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found (set CC): µLM runs its slower torch kernels")
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
        texts = [path.read_text() for path in (*SOURCES, *HEADERS)]
        key = hashlib.sha256("\0".join((*texts, " ".join(FLAGS), version, _cpu_flags())).encode())
        target = _kernel_dir() / f"ulm_kernels-{key.hexdigest()[:20]}.so"
        if not target.is_file():
            log.info("building µLM's native kernels for this machine (once, ~10 s) into %s", target.parent)
            with progress.stage("building µLM's native kernels (once)"):
                _build(cc, target)
        return _declare(ctypes.CDLL(str(target)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("µLM's native kernels are unavailable (%s): running the slower torch kernels", exc)
        return None
