"""When a training session stops before the end of its schedule.

A session stops cleanly, with a checkpoint, on SIGINT/SIGTERM (:class:`StopFlag`; a second
Ctrl-C aborts), when the next step would pass ``train.max_minutes`` (measured from the session's
start, a mean step ahead), or after ``max_steps`` steps of this session. Under torchrun every
process takes the same decision (:func:`interir.engine.distributed.any_true`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from interir.engine.distributed import any_true, broadcast_object

__all__ = ["StopFlag", "SessionLimits"]

log = logging.getLogger("interir.train")


class StopFlag:
    """SIGINT/SIGTERM request a clean stop (checkpoint at the next step); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("received %s: stopping after this step with a checkpoint (Ctrl-C again to abort)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


@dataclass
class SessionLimits:
    """What ends a session early: a stop request, the time budget, a number of steps.

    Attributes:
        flag: the session's :class:`StopFlag`.
        budget_s: ``train.max_minutes`` in seconds, or ``None``.
        max_steps: steps this session may take, or ``None``.
        started: ``time.time()`` at the session's start.
        start_step: the step the session started at.
    """

    flag: StopFlag
    budget_s: float | None
    max_steps: int | None
    started: float
    start_step: int

    def local_reason(self, step: int, train_time: float) -> str | None:
        """Why this process would stop after ``step`` (``train_time``: seconds of training steps
        this session), or ``None``."""
        if self.flag.requested:
            return "signal"
        if self.budget_s is not None and (
            time.time() - self.started + train_time / max(1, step - self.start_step) >= self.budget_s
        ):
            return "time_budget"
        if self.max_steps is not None and step - self.start_step >= self.max_steps:
            return "max_steps"
        return None

    def reason(self, step: int, train_time: float, device: torch.device) -> str | None:
        """The stop reason all processes agree on (rank 0's), or ``None`` to go on."""
        local = self.local_reason(step, train_time)
        if not any_true(local is not None, device):
            return None
        return broadcast_object(local or "signal")
