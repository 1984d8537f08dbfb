"""Weight loading: GGUF files (gguf.py), HF directories (hf.py), and the convert-once cache (cache.py).

    from ulm.registry import resolve
    from ulm.loading import load_checkpoint
    from ulm.model import build_model
    config, state = load_checkpoint(resolve("smollm2-135m"), torch.float32)
    model = build_model(config, state, torch.float32, "cpu")
"""

from ulm.loading.cache import convert_gguf, fingerprint, is_cached, load_checkpoint
from ulm.loading.gguf import GGUFTensor, read_gguf, read_gguf_blocks
from ulm.loading.hf import read_hf

__all__ = ["GGUFTensor", "convert_gguf", "fingerprint", "is_cached", "load_checkpoint", "read_gguf",
           "read_gguf_blocks", "read_hf"]
