"""The CPU thread count of every entry point (CLI commands, the Python API, the web page).

One rule, first match wins:

1. an explicit argument (``--threads N``, ``restore_tensor(..., threads=N)``);
2. the command's own choice (``train.threads`` of a training config);
3. the environment variable ``INTERIR_THREADS``;
4. one thread.

Why one: ``benchmarks/thread_default.py`` timed one against all cores (2 here) restoring a 1-MP
photo with the default model, on an idle machine and with one core taken by another process
(``benchmarks/results/thread_default.md``): idle, 1 thread took 1.50x the time of 2; busy, 2
threads took 2.02x the time of 1. One thread is never much worse, so it is the default. Issue 30
measured the same outside ``restore``: ``restore_tensor`` with torch's default threads took 26 s
against 4.7 s with one on a busy machine, ``interir train`` made 1 step in 30 s against 40.

``0`` (argument or variable) keeps torch's own setting (all cores, or ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["DEFAULT_THREADS", "THREADS_ENV", "resolve_threads", "apply_threads", "thread_count"]

#: Threads when neither an argument, the command nor ``INTERIR_THREADS`` says otherwise.
DEFAULT_THREADS = 1
#: Environment variable read by every entry point when no argument is given.
THREADS_ENV = "INTERIR_THREADS"



def _from_env() -> int | None:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"{THREADS_ENV}={raw!r} is not a thread count. Fix: set it to a whole number >= 1 "
            f"(0 keeps torch's own choice), or unset it for the default of {DEFAULT_THREADS}"
        )
    return value


def resolve_threads(explicit: int | None = None, command: int | None = None) -> int:
    """The thread count the rule gives (module docstring); 0 means "keep torch's own".

    Args:
        explicit: the caller's argument (``None``: not given).
        command: the command's own choice, e.g. ``train.threads`` (``None``: none).

    Raises:
        ValueError: a negative count, or ``INTERIR_THREADS`` that is not a whole number >= 0.
    """
    for value in (explicit, command):
        if value is not None:
            if isinstance(value, bool) or int(value) < 0:
                raise ValueError(f"threads must be >= 1 (0: torch's own choice), got {value!r}")
            return int(value)
    env = _from_env()
    return DEFAULT_THREADS if env is None else env


def apply_threads(explicit: int | None = None, command: int | None = None) -> int:
    """Set torch's CPU threads by the rule for the whole process (a CLI command); the count now.

    The count is also exported as ``INTERIR_THREADS``, so the library calls the command makes
    (``restore_tensor``'s own rule) and its child processes keep it.
    """
    wanted = resolve_threads(explicit, command)
    if wanted > 0:
        torch.set_num_threads(wanted)
    os.environ[THREADS_ENV] = str(wanted)
    return torch.get_num_threads()


@contextmanager
def thread_count(explicit: int | None = None, command: int | None = None) -> Iterator[int]:
    """Run a block with the rule's thread count, then put torch's setting and ``INTERIR_THREADS``
    back (library calls must not change the caller's process for good). Inside the block the
    count is exported as ``INTERIR_THREADS``, so nested calls (a validation inside training) keep it.
    """
    previous = torch.get_num_threads()
    previous_env = os.environ.get(THREADS_ENV)
    wanted = resolve_threads(explicit, command)
    if wanted > 0 and wanted != previous:
        torch.set_num_threads(wanted)
    os.environ[THREADS_ENV] = str(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
        if previous_env is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous_env
