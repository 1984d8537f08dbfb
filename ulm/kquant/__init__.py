"""GGUF block-quant weights (Q4_K, Q5_K, Q6_K, Q8_0, Q5_0) run natively from their blocks, with no float copy.

- `formats`: the block formats and their reference dequantisation in torch (bit-equal to gguf's).
- `linear`: `KQuantLinear`, one linear of one or several stacked GGUF tensors, on the VNNI kernels of
  ulm/kernels/ulm_kquant*.c (repacked losslessly into their tile layout) or, without them, on the reference.
- `embedding`: `KQuantEmbedding`, a token table kept in its blocks, rows dequantised per lookup.
- `memory`: `huge_pages_buffer`, the weights' memory in transparent huge pages.
- `bench`: `python -m ulm.kquant.bench`, the kernels' µs and GB/s per linear beside µLM's int4 kernel and
  torch's bf16 matmul.
"""

from ulm.kquant.embedding import KQuantEmbedding
from ulm.kquant.formats import FORMATS, BlockFormat, block_format, dequantize
from ulm.kquant.linear import KQuantLinear, kernels_available
from ulm.kquant.memory import huge_pages_buffer

__all__ = ["FORMATS", "BlockFormat", "KQuantEmbedding", "KQuantLinear", "block_format", "dequantize",
           "huge_pages_buffer", "kernels_available"]
