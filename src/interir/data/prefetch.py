"""Prepare the next training batch in a background thread while the current step runs [ours].

:class:`Prefetcher` wraps :class:`interir.data.training.TrainingBatches`: when step ``s``'s batch
is handed over, step ``s + 1``'s is started in one worker thread (reading, cropping and degrading
it), so on a machine with a spare core the step never waits for its data. The batches are exactly
those of the wrapped object, in the same order (every draw is keyed by the step, and the global
generators' seeded blocks hold :data:`interir.utils.seed.GLOBAL_RNG_LOCK`), so a prefetching run,
a plain one and a resumed one see the same data. Torch operators release the GIL, so the thread
runs in parallel with the step's forward and backward passes; with no spare core it only
interleaves, at the same total work.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import torch

__all__ = ["Prefetcher", "prefetch_wanted"]


class StepBatches(Protocol):
    """What :class:`Prefetcher` wraps: ``get(step) -> (inputs, target)``, ``last_records``, ``close()``."""

    last_records: list[dict]

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def close(self) -> None: ...


class Prefetcher:
    """``get(step)`` returns what ``batches.get(step)`` would, having started it one step early.

    Args:
        batches: the object to wrap; ``get`` must be called with consecutive steps.
    """

    def __init__(self, batches: StepBatches) -> None:
        self.batches = batches
        self.last_records: list[dict] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interir-prefetch")
        self._pending: tuple[int, Future] | None = None

    def __getattr__(self, name: str) -> Any:  # kind, mixed, rows, describe_mix(), len ...
        return getattr(self.__dict__["batches"], name)

    def __len__(self) -> int:
        return len(self.batches)

    def _load(self, step: int) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        inputs, target = self.batches.get(step)
        return inputs, target, list(self.batches.last_records)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, target)`` of ``step``; starts preparing ``step + 1``'s."""
        if self._pending is None:
            future = self._pool.submit(self._load, step)
        elif self._pending[0] == step:
            future = self._pending[1]
        else:
            raise RuntimeError(f"batches are read in order: asked for step {step}, "
                               f"step {self._pending[0]} was prepared")
        inputs, target, self.last_records = future.result()
        self._pending = (step + 1, self._pool.submit(self._load, step + 1))
        return inputs, target

    def close(self) -> None:
        """Wait for the batch in preparation (its result is dropped), stop the thread."""
        if self._pending is not None:
            self._pending[1].exception()  # waits; an error in an unused batch does not matter
            self._pending = None
        self._pool.shutdown(wait=True)
        self.batches.close()


def prefetch_wanted(setting: bool | str, processes_per_machine: int, threads_per_process: int) -> bool:
    """Whether to prefetch: ``True``/``False`` as said; ``"auto"`` when the processes' compute
    threads leave at least one core free for the data threads."""
    if setting != "auto":
        return bool(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > processes_per_machine * max(threads_per_process, 1)
