"""torchrun's environment → this process's place in the run.

Under `torchrun --nproc_per_node N ...` (RANK, WORLD_SIZE, LOCAL_RANK set) `setup` joins the process
group: nccl when training on CUDA (one GPU per local rank), gloo on CPU. Without torchrun it is a single
process (world 1) and nothing is initialised. `all_sum` adds a tensor over the ranks in place (a no-op for
one process); `any_rank` is true when any rank says so (stopping together on a signal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's rank, the number of processes, and the device it trains on."""

    rank: int
    local_rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """auto → cuda (this local rank's GPU) when available, else cpu."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is available to torch here")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_choice: str) -> Dist:
    """Join torchrun's process group when there is one; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(rank, local_rank, world, device)


def teardown(d: Dist, finished: bool) -> None:
    """Leave the process group. A rank that `finished` first waits for the others: rank 0 is still writing
    the last checkpoint while the others are done, and a gloo rank that destroys its group while a peer
    still holds the connections aborts ("terminate called without an active exception", 1 run in 10 under
    load). A rank leaving on an error does not wait (its peers would never come)."""
    if d.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_sum(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """`value` summed over the ranks (in place)."""
    if d.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def any_rank(flag: bool, d: Dist) -> bool:
    """True when `flag` is true on any rank."""
    if not d.enabled:
        return flag
    return bool(all_sum(torch.tensor([float(flag)], device=d.device), d).item() > 0)
