"""The CPU thread count of ``restore`` and ``eval``: its default, and why it is that.

``benchmarks/thread_default.py`` timed one against all cores (2 here) restoring a 1-MP photo with
the default model, on an idle machine and with one core taken by another process
(``benchmarks/results/thread_default.md``): idle, 1 thread took 1.50x the time of 2; busy, 2
threads took 2.02x the time of 1. One thread is never much worse, so it is the default.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_THREADS", "THREADS_HELP", "apply_threads"]

#: Threads used when ``--threads`` is not given (``None`` would keep torch's choice, all cores).
DEFAULT_THREADS: int | None = 1

#: The ``--threads`` help of ``restore`` and ``eval``.
THREADS_HELP = (
    "torch CPU threads. Default 1, chosen by measurement (benchmarks/thread_default.py, a 1-MP "
    "photo on 2 cores): on an idle machine all cores are 1.5x faster, with one core busy they "
    "are 2x slower; 1 is never much worse. Pass the core count on a machine you know is idle."
)


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU threads to ``threads`` (``None``: :data:`DEFAULT_THREADS`); the count now."""
    wanted = threads if threads is not None else DEFAULT_THREADS
    if wanted is not None:
        if wanted < 1:
            raise ValueError(f"threads must be >= 1, got {wanted}")
        torch.set_num_threads(int(wanted))
    return torch.get_num_threads()
