"""Process-group setup for ``torchrun``: one code path for 1 process, N GPUs and N CPU processes.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`init_distributed` joins the
process group with NCCL when the process trains on CUDA and gloo on CPU, and picks the device
``cuda:LOCAL_RANK``. Without torchrun it returns a single-process :class:`DistInfo` and touches no
process group. Only the main process (rank 0) writes files and logs.

The device rule is :func:`interir.utils.device.resolve_device` (the one every command uses);
:func:`rank_device` adds torchrun's: a CUDA device without an index is ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from interir.engine.checkpoint import unwrap_model
from interir.utils.device import resolve_device

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "rank_device",
    "per_rank_batch",
    "barrier",
    "any_true",
    "all_gather_object",
    "broadcast_object",
    "params_digest",
    "check_replicas",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes:
        rank, world_size, local_rank: from torchrun (0, 1, 0 without it).
        device: the device this process trains on.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """:func:`interir.utils.device.resolve_device`, then ``cuda`` -> ``cuda:local_rank``.

    Raises:
        ValueError: the device is malformed or absent (the message names the fix, as a
            ``train.device`` setting).
    """
    try:
        device = resolve_device(spec)
    except ValueError as err:
        raise ValueError(str(err).replace("--device ", "train.device=")) from None
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistInfo:
    """Join the torchrun process group when there is one.

    Args:
        device: ``train.device`` (``"auto"``, ``"cpu"``, ``"cuda"``...).
        timeout_minutes: collective timeout (validation runs on rank 0 while the others wait).

    Returns:
        The :class:`DistInfo` of this process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = rank_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=timeout_minutes)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def cleanup_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """The batch each process runs so that the global batch stays ``global_batch``.

    Raises:
        ValueError: ``global_batch`` is not a multiple of ``world_size``.
    """
    if global_batch % world_size:
        raise ValueError(
            f"train.batch_size={global_batch} cannot be split evenly over {world_size} processes; "
            f"use a multiple of {world_size} (e.g. {world_size * max(1, round(global_batch / world_size))}) "
            "or change --nproc_per_node"
        )
    return global_batch // world_size


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _active():
        dist.barrier()


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (e.g. a stop request)."""
    if not _active():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def params_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes, dtypes and bytes) of a model."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_replicas(model: nn.Module) -> list[str]:
    """Digests of every process's weights, gathered on all of them (see :func:`params_digest`).

    Returns:
        One digest per rank; they are all equal when the replicas are in sync.
    """
    return all_gather_object(params_digest(unwrap_model(model)))
