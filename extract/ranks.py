"""The processes of one extraction or fine-tune, when launched by ``accelerate launch`` (or torchrun).

A thin wrapper on accelerate's ``PartialState``, for three reasons: a plain ``landscape extract``
must not start ``torch.distributed`` at all (the single-process default stays as it was); on a
machine without GPUs ``PartialState`` must be told ``cpu=True`` or every rank silently believes
it is rank 0 of 1; and the extraction needs only a rank, a barrier, a sum and a fair share of a
list of unequal work items (``share``: ``split_between_processes`` cuts a list by count into
contiguous slices, which leaves the rank holding the long groups (up to 10x the tokens of others)
working alone at the end).

Example:
    >>> ranks = Ranks()  # the single process: rank 0 of 1, every call a no-op
    >>> ranks.main, ranks.share(["a", "b", "c"], costs=[1, 5, 1])
    (True, ['a', 'b', 'c'])
    >>> Ranks(index=1, count=2).share(["a", "b", "c"], costs=[1, 5, 1])
    ['a', 'c']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

T = TypeVar("T")

# A rank that finishes its share early waits at a barrier for the slowest one; gloo's and
# NCCL's default 30 minutes is shorter than one condition of a large model.
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    """Rank ``index`` of ``count`` processes; ``device`` is this rank's accelerator (None: the default)."""

    index: int = 0
    count: int = 1
    device: torch.device | None = None

    @property
    def main(self) -> bool:
        return self.index == 0

    def share(self, items: Sequence[T], costs: Sequence[float]) -> list[T]:
        """This rank's items, in their original order: each item, costliest first, goes to the
        least-loaded rank (longest-processing-time rule; deterministic, so every rank agrees)."""
        if self.count == 1:
            return list(items)
        loads = [0.0] * self.count
        owner = [0] * len(items)
        for position in sorted(range(len(items)), key=lambda i: (-costs[i], i)):
            rank = min(range(self.count), key=lambda r: (loads[r], r))
            owner[position] = rank
            loads[rank] += costs[position]
        return [item for item, rank in zip(items, owner, strict=True) if rank == self.index]

    def barrier(self) -> None:
        if self.count > 1:
            torch.distributed.barrier()

    def least(self, value: int | None) -> int | None:
        """The smallest ``value`` over ranks (a size each rank chose from its own free memory), so
        that every rank plans the same batches; None (no size: every rank's device is alike) stays."""
        if self.count == 1 or value is None:
            return value
        tensor = torch.tensor([value], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
        return int(tensor.item())

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (gradients, code lengths); returns it."""
        if self.count > 1:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor


SINGLE = Ranks()  # the single process: the default of every function that takes ranks


def launched() -> bool:
    """True when this process is one of several started by a launcher (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Ranks:
    """The ranks of this launch: ``Ranks()`` unless started by ``accelerate launch``/torchrun."""
    if not launched():
        return SINGLE
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)
    device = state.device if state.device.type != "cpu" else torch.device("cpu")
    return Ranks(index=state.process_index, count=state.num_processes, device=device)
