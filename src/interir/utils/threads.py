"""The CPU thread count of ``restore`` and ``eval``: its default, and why it is that.

The default stays torch's own (one thread per core) until ``benchmarks/thread_default.py`` has
timed one against all cores on an idle and on a loaded machine; its table goes to
``benchmarks/results/thread_default.md`` and the default follows the count that is never much
worse than the best. The one measurement so far (``docs/inference.md``) is of a loaded machine,
where all cores were far slower than one.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_THREADS", "THREADS_HELP", "apply_threads"]

#: Threads used when ``--threads`` is not given; ``None`` keeps torch's choice (all cores).
DEFAULT_THREADS: int | None = None

#: The ``--threads`` help of ``restore`` and ``eval``.
THREADS_HELP = (
    "torch CPU threads. Default: all cores (torch's own choice); not yet chosen by measurement: "
    "benchmarks/thread_default.py times 1 vs all cores on an idle and a loaded machine and the "
    "default will follow its result. On a busy machine pass 1: with the other core busy, 2 "
    "threads were 50x slower than 1 (docs/inference.md)."
)


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU threads to ``threads`` (``None``: :data:`DEFAULT_THREADS`); the count now."""
    wanted = threads if threads is not None else DEFAULT_THREADS
    if wanted is not None:
        if wanted < 1:
            raise ValueError(f"threads must be >= 1, got {wanted}")
        torch.set_num_threads(int(wanted))
    return torch.get_num_threads()
