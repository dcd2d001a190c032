"""Data-parallel training under ``torchrun``: process group, batch split and gradient averaging.

``torchrun`` starts one process per rank and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
(and the rendezvous address) in each process's environment. :func:`setup` joins the process
group: gloo for CPU training, NCCL for CUDA, where rank r trains on ``cuda:LOCAL_RANK``. Every
rank loads the whole dataset and seeds its generators alike, so every rank draws the same global
batch. :func:`split_batch` gives each rank its contiguous part, and the union of the parts is
the batch a single process would train on. Gradients are averaged over ranks before each
optimizer step, by ``DistributedDataParallel`` (:func:`wrap`) or by :func:`average_gradients`,
so every rank applies the same update and the parameters stay equal on all ranks.

Outside ``torchrun`` (or before :func:`setup`) every function here is the identity of a single
process: rank 0 of a world of size 1, the whole batch as the rank's part, no communication.

Limitations:
    - Every rank loads the whole dataset. Only the batches are split.
    - Dropout masks come from each rank's own torch generator, so a model with dropout matches
      a single process only in distribution, not sample by sample.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from recrl.errors import InvalidArgumentError

__all__ = [
    "BatchPart",
    "average_gradients",
    "barrier",
    "broadcast_from_main",
    "check_batch_size",
    "is_active",
    "is_main",
    "launched_by_torchrun",
    "local_rank",
    "loss_denominator",
    "mean_over_ranks",
    "rank",
    "setup",
    "shutdown",
    "split_batch",
    "sum_over_ranks",
    "unwrap",
    "world_size",
    "wrap",
]

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

# Whether this module created the process group, so shutdown() leaves a group that the
# caller created alone.
_owns_group = False

Rows = TypeVar("Rows", torch.Tensor, npt.NDArray[np.int64])


def launched_by_torchrun() -> bool:
    """Return whether the environment has the rank variables that ``torchrun`` sets."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_active() -> bool:
    """Return whether a process group is initialised, so the collectives here communicate."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """Return this process's rank, 0 outside a process group."""
    return torch.distributed.get_rank() if is_active() else 0


def world_size() -> int:
    """Return the number of ranks, 1 outside a process group."""
    return torch.distributed.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Return whether this process is rank 0, the one that writes files and prints."""
    return rank() == 0


def local_rank() -> int:
    """Return the rank among the processes of this machine (``LOCAL_RANK``), 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_active() else 0


def setup(device: str) -> str:
    """Join the ``torchrun`` process group and return the torch device of this rank.

    Outside ``torchrun`` this does nothing and returns ``device`` unchanged.

    Args:
        device: ``cpu`` (gloo backend) or ``cuda`` (NCCL backend, rank on ``cuda:LOCAL_RANK``).

    Raises:
        InvalidArgumentError: ``device`` names one CUDA device (``cuda:1``), which would put
            every rank on the same GPU, or a rank variable is not an integer.
    """
    if not launched_by_torchrun():
        return device
    if device.startswith("cuda:"):
        raise InvalidArgumentError(
            f"device: expected cpu or cuda under torchrun (each rank then uses "
            f"cuda:LOCAL_RANK), got {device!r}"
        )
    try:
        ranks = {name: int(os.environ[name]) for name in TORCHRUN_VARIABLES}
    except ValueError as error:
        raise InvalidArgumentError(
            f"torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}"
        ) from error
    if device == "cuda":
        torch.cuda.set_device(ranks["LOCAL_RANK"])
        device = f"cuda:{ranks['LOCAL_RANK']}"
    if not is_active():
        global _owns_group
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(
            backend=backend, rank=ranks["RANK"], world_size=ranks["WORLD_SIZE"]
        )
        _owns_group = True
        logger.info(
            "joined the %s process group as rank %d of %d on %s",
            backend,
            ranks["RANK"],
            ranks["WORLD_SIZE"],
            device,
        )
    return device


def shutdown(*, clean: bool = True) -> None:
    """Leave the process group that :func:`setup` created; do nothing otherwise.

    With ``clean`` (every rank finished its work), the ranks first wait for each other, since a
    rank that tears its group down while another is still in a collective can abort that rank's
    gloo threads. After an error no rank waits, so a failed rank cannot hang on the barrier.
    """
    global _owns_group
    if _owns_group and is_active():
        if clean:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    _owns_group = False


def barrier() -> None:
    """Wait until every rank arrives here; do nothing outside a process group."""
    if is_active():
        torch.distributed.barrier()


def check_batch_size(name: str, batch_size: int) -> None:
    """Raise unless the global batch size ``batch_size`` divides by the world size.

    Equal parts make the mean of the ranks' per-sample means the mean over the global batch.

    Raises:
        InvalidArgumentError: ``batch_size`` is not a multiple of the world size.
    """
    ranks = world_size()
    if batch_size % ranks:
        raise InvalidArgumentError(
            f"{name}: expected a global batch size divisible by the {ranks} ranks, got "
            f"{batch_size}; pick a multiple of {ranks} or change --nproc_per_node"
        )


@dataclass(frozen=True)
class BatchPart(Generic[Rows]):
    """One rank's contiguous part ``[start, stop)`` of a global batch of ``total`` rows.

    Attributes:
        rows: int64 [stop - start], the rank's rows of the global batch.
        start: first position of the part in the global batch.
        stop: one past its last position.
        total: B, the size of the global batch.
        ranks: the world size.
    """

    rows: Rows
    start: int
    stop: int
    total: int
    ranks: int

    @property
    def size(self) -> int:
        """The number of rows of this part."""
        return self.stop - self.start

    @property
    def loss_scale(self) -> float:
        """The factor that turns the part's mean loss into its share of the global mean.

        Gradients are averaged over ranks, so a rank whose mean loss covers ``size`` of the
        ``total`` rows scales it by ``size * ranks / total``. The scaled losses then average to
        the mean over the global batch even where the parts differ in size, such as the last
        batch of an epoch.
        """
        return self.size * self.ranks / self.total if self.total else 0.0

    def global_mean(self, value: float) -> float:
        """Return the global batch mean of a per-sample mean ``value`` over this part's rows.

        Every rank must call this at the same point. A part without rows contributes nothing,
        whatever ``value`` it passes (the mean of no rows is NaN).
        """
        if self.ranks == 1:
            return value
        weighted = value * self.size if self.size else 0.0
        return float(sum_over_ranks(torch.tensor([weighted], dtype=torch.float64))[0]) / max(
            self.total, 1
        )


def split_batch(rows: Rows) -> BatchPart[Rows]:
    """Return this rank's contiguous part of the global batch ``rows`` int64 [B].

    Part r covers positions ``[B * r // W, B * (r + 1) // W)`` for W ranks, so the parts
    differ in size by at most one row and their concatenation in rank order is ``rows``.
    """
    total = len(rows)
    ranks = world_size()
    index = rank()
    start = total * index // ranks
    stop = total * (index + 1) // ranks
    return BatchPart(rows[start:stop], start, stop, total, ranks)


def wrap(module: nn.Module) -> nn.Module:
    """Wrap ``module`` in ``DistributedDataParallel``; return it unchanged outside a group.

    Buffers are not broadcast on each forward pass: the modules of recrl keep only constant
    buffers, and parameters stay equal because every rank applies the same averaged gradient.
    """
    if not is_active():
        return module
    parameter = next(module.parameters(), None)
    on_cuda = parameter is not None and parameter.device.type == "cuda"
    # torch 2.15 renamed broadcast_buffers to forward_sync_buffers and deprecated the old name.
    accepted = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    name = "forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"
    options: dict[str, Any] = {name: False}
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[local_rank()] if on_cuda else None, **options
    )


def unwrap(module: nn.Module) -> nn.Module:
    """Return the module inside a ``DistributedDataParallel`` wrapper, or ``module`` itself."""
    if isinstance(module, nn.parallel.DistributedDataParallel):
        inner: nn.Module = module.module
        return inner
    return module


def _communication_device() -> torch.device:
    # NCCL communicates CUDA tensors only, gloo CPU tensors (and CUDA tensors by copying).
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Return the elementwise sum of ``value`` over ranks, detached; ``value`` itself alone."""
    if not is_active():
        return value.detach()
    buffer = value.detach().to(_communication_device(), copy=True)
    torch.distributed.all_reduce(buffer, op=torch.distributed.ReduceOp.SUM)
    return buffer.to(value.device)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Return the mean over ranks of each named scalar; every rank passes the same names.

    With equal batch parts the mean over ranks of per-rank batch means is the global batch
    mean, so the diagnostics of a data-parallel step equal those of one process.
    """
    if not is_active() or not values:
        return values
    names = list(values)
    totals = sum_over_ranks(torch.tensor([values[name] for name in names], dtype=torch.float64))
    count = world_size()
    return {name: float(total) / count for name, total in zip(names, totals)}


def loss_denominator(count: torch.Tensor) -> torch.Tensor:
    """Return the denominator of a loss normalised by a count over the global batch.

    A loss ``sum / max(count, 1)`` over the global batch becomes, on each rank,
    ``local_sum / loss_denominator(local_count)``. The denominator is the global count, at
    least 1, divided by the world size, because gradients are averaged over ranks.

    Args:
        count: float scalar, the rank's count (such as the number of valid rows).
    """
    if not is_active():
        return count.clamp(min=1.0)
    return sum_over_ranks(count).clamp(min=1.0) / world_size()


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over ranks, in one all-reduce.

    Parameters without a gradient keep none, so the optimizer still skips them. Every rank
    must reach this call with gradients on the same parameters, which holds when every rank
    runs the same update on its part of the batch.
    """
    if not is_active() or world_size() == 1:
        return
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return
    flat = torch.cat([gradient.reshape(-1) for gradient in gradients])
    averaged = sum_over_ranks(flat) / world_size()
    offset = 0
    for gradient in gradients:
        size = gradient.numel()
        gradient.copy_(averaged[offset : offset + size].view_as(gradient))
        offset += size


T = TypeVar("T")


def broadcast_from_main(compute: Callable[[], T]) -> T:
    """Run ``compute`` on rank 0 alone and return its result on every rank.

    The result travels through ``torch.distributed.broadcast_object_list``, which pickles it
    on rank 0 and unpickles it on the other ranks of the same job.
    """
    if not is_active():
        return compute()
    holder: list[Any] = [compute() if is_main() else None]
    torch.distributed.broadcast_object_list(holder, src=0, device=_communication_device())
    result: T = holder[0]
    return result
