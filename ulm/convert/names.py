"""Canonical state-dict names (ulm/__init__.py) → HF's and llama.cpp's tensor names, by inverting the loaders'
own tables (ulm/loading/hf.py, ulm/loading/gguf.py), so each mapping is written once.

    hf_name("layers.3.attn.wq.weight")   == "model.layers.3.self_attn.q_proj.weight"
    gguf_name("layers.3.attn.wq.weight") == "blk.3.attn_q.weight"
"""

from __future__ import annotations

from ulm.loading import gguf as gguf_names
from ulm.loading import hf as hf_names


def _inverse(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


_HF = (_inverse(hf_names._GLOBAL_NAMES), _inverse(hf_names._LAYER_NAMES), "model.layers.{i}.{part}")
_GGUF = (_inverse(gguf_names._GLOBAL_NAMES), _inverse(gguf_names._LAYER_NAMES), "blk.{i}.{part}")


def _rename(canonical: str, tables: tuple[dict[str, str], dict[str, str], str]) -> str:
    global_names, layer_names, layer_form = tables
    stem, _, kind = canonical.rpartition(".")
    if stem in global_names:
        return f"{global_names[stem]}.{kind}"
    _, index, rest = stem.split(".", 2)
    return f"{layer_form.format(i=index, part=layer_names[rest])}.{kind}"


def hf_name(canonical: str) -> str:
    """The HF tensor name of a canonical name."""
    return _rename(canonical, _HF)


def gguf_name(canonical: str) -> str:
    """llama.cpp's tensor name of a canonical name."""
    return _rename(canonical, _GGUF)
