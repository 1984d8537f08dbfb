"""The fast model's own modules: the bf16 embedding that widens to the fp32 residual stream, and the LM head
whose int4 logits rank the vocabulary while the best candidates are recomputed from the bf16 table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ulm.kernels.native import library


class WideningEmbedding(nn.Module):
    """A token embedding stored in bf16 whose lookups come out fp32 (the residual stream's dtype)."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)  # [V, D]

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight).float()  # [B, T, D]


class RefinedHead(nn.Module):
    """The LM head: int4 logits for the whole vocabulary, then the best candidates recomputed exactly.

    Requantising the 8-bit token embedding (tied head) to 4 bits moves logits by up to ~4, which flips the
    argmax often (84% top-1 agreement with fp32 on the benchmark text); an int8 head is exact enough but
    ~6× slower on torch's CPU kernels. So the int4 head ranks, and the candidates get their logits from the
    bf16 table with fp32 accumulation: the argmax and the head of the distribution are those of a dense
    head. Logits outside the candidates keep the int4 value.

    The candidates are every logit at or above the k-th largest of the per-chunk maxima (chunks of
    `CHUNK`): a superset of the top k (k chunks hold a logit at least that large), found with a max per
    chunk, a top-k over the few hundred chunk maxima and one comparison, where `topk` over 49k logits
    costs 0.1-0.5 ms on the CPU (it is data dependent). Usually a little over k candidates.
    """

    CHUNK = 128

    def __init__(self, coarse: nn.Module, weight: Tensor, k: int = 64) -> None:
        super().__init__()
        self.coarse = coarse
        self.weight = weight  # [V, D] bf16: the embedding's table when tied (shared, not copied)
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        logits = self.coarse(x)  # [..., V] fp32
        V, D = self.weight.shape
        rows, xs = logits.view(-1, V), x.reshape(-1, D).float().contiguous()  # [N, V], [N, D]
        lib = library() if self.weight.dtype == torch.bfloat16 and self.weight.is_contiguous() else None
        if lib is not None and logits.is_contiguous() and logits.device.type == "cpu":
            # the same candidates, found and recomputed for every row in one native call
            if lib.ulm_refine_logits(rows.data_ptr(), rows.shape[0], V, self.weight.data_ptr(), D, xs.data_ptr(),
                                     self.k, self.CHUNK) < 0:
                raise MemoryError("no memory for the LM head's refinement")
            return logits
        for row, h in zip(rows, xs, strict=True):
            idx = self.candidates(row)  # [n]
            row[idx] = F.embedding(idx, self.weight).float() @ h  # [n, D] @ [D] → [n]
        return logits

    def candidates(self, row: Tensor) -> Tensor:
        """Indices of a superset of the k largest entries of row [V] (all of them when there are at most k chunks)."""
        V = row.shape[0]
        if self.k * self.CHUNK >= V:
            return torch.arange(V, device=row.device)
        whole = V // self.CHUNK * self.CHUNK
        maxima = row[:whole].view(-1, self.CHUNK).amax(-1)  # [V / CHUNK]
        if whole < V:
            maxima = torch.cat((maxima, row[whole:].amax(-1, keepdim=True)))
        threshold = maxima.topk(self.k, sorted=False).values.min()
        return (row >= threshold).nonzero().squeeze(1)
