"""Seeding and random-number-generator state: reproducible runs and exact resume.

Every random draw in training is either

- a function of ``(seed, counters)`` through :func:`derive_seed` (patch sampling order, each
  sample's crop and flips, each step's degradations), so it does not depend on how the run was
  split into sessions, or
- drawn from the global generators (``random``, ``numpy``, ``torch``), whose states
  :func:`capture_rng_state` / :func:`restore_rng_state` save in and restore from a checkpoint.

The captured state holds only tensors, ints, floats, strings, lists, tuples, dicts and ``None``,
so it loads with ``torch.load(weights_only=True)`` (no arbitrary unpickling). :func:`seeded` and
:func:`capture_rng_state` hold one lock, so a thread preparing the next batch never leaves its
temporary seed in a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
from typing import Any, Iterator

import numpy as np
import torch

# Held by seeded() and capture_rng_state(): the data prefetch thread seeds the global generators
# for each sample while the training thread may be saving their states in a checkpoint.
GLOBAL_RNG_LOCK = threading.RLock()

__all__ = [
    "seed_everything",
    "derive_seed",
    "capture_rng_state",
    "restore_rng_state",
    "seeded",
]

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a fixed function of ``parts`` (e.g. ``(seed, epoch, position)``).

    Uses BLAKE2b, so it is the same in every process, Python version and platform (unlike
    ``hash()``), and nearby inputs give unrelated seeds.
    """
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little") & _MASK63


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (CPU and every CUDA device).

    Args:
        seed: any non-negative integer.
        deterministic: also ask PyTorch for deterministic kernels (slower on GPU; CPU kernels
            used by the models here are deterministic already). Sets
            ``CUBLAS_WORKSPACE_CONFIG`` as cuBLAS requires.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def capture_rng_state() -> dict[str, Any]:
    """The states of the global ``random``, ``numpy`` and ``torch`` (CPU + CUDA) generators."""
    with GLOBAL_RNG_LOCK:  # not in the middle of another thread's seeded() block
        return _capture_rng_state()


def _capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # ('MT19937', keys uint32[624], pos, has_gauss, cached)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (missing entries are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            (s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"])
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu().to(torch.uint8) for s in cuda_states])


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with ``random``, ``numpy`` and CPU ``torch`` seeded by ``seed``, then put the
    previous global states back, so the block's draws neither depend on nor disturb the rest."""
    with GLOBAL_RNG_LOCK:  # a data thread's block and the trainer's state capture never interleave
        saved_py = random.getstate()
        saved_np = np.random.get_state()
        saved_torch = torch.get_rng_state()
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(saved_py)
            np.random.set_state(saved_np)
            torch.set_rng_state(saved_torch)
