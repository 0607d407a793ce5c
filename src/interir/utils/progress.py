"""One progress display for the long commands (``restore``, ``synth``, ``eval``).

On a terminal (stdout and stderr both) it is a rich progress bar over the items (images, pairs)
with a second bar for the steps of the current item (the tiles of a large image). Anywhere else
(a pipe, a log file, a test) it prints plain lines instead: a status line at most every
``interval`` seconds (always for the last item) and a step line at most every ``step_interval``
seconds (none for an item done sooner), both on stderr. The lines a command prints for its
results go through :meth:`print`, so they appear above the bar instead of breaking it.

The lower layers know nothing of this module: they take callbacks (``progress(done, total)`` per
tile in :mod:`interir.inference`, ``progress(done, total, name)`` per item in synthesis and
evaluation), and the commands pass the methods of a :class:`ProgressDisplay`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["MODES", "ProgressDisplay", "choose_mode", "format_seconds"]

#: ``mode`` values: ``auto`` (rich on a terminal, plain lines elsewhere), ``rich``, ``plain``,
#: ``off`` (only the lines given to :meth:`ProgressDisplay.print`).
MODES = ("auto", "rich", "plain", "off")


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def choose_mode(out: TextIO, err: TextIO) -> str:
    """``"rich"`` when both streams are terminals, else ``"plain"``."""
    return "rich" if _is_terminal(out) and _is_terminal(err) else "plain"


def format_seconds(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``2 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


class ProgressDisplay:
    """Progress over ``total`` items, each optionally made of steps; use it as a context manager.

    Args:
        total: number of items (may be set later by :meth:`update`).
        unit: what an item is, for the bar and the status lines (``"images"``, ``"pairs"``).
        mode: one of :data:`MODES`.
        interval: least seconds between two plain status lines (``None``: none at all, for
            commands that print a result line per item themselves).
        step_interval: least seconds between two plain step lines (``None``: none).
        out, err: streams (default: ``sys.stdout`` and ``sys.stderr`` when the display is made).
    """

    def __init__(
        self,
        total: int,
        unit: str = "images",
        *,
        mode: str = "auto",
        interval: float | None = 1.0,
        step_interval: float | None = 10.0,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.mode = choose_mode(self.out, self.err) if mode == "auto" else mode
        self.total, self.unit = int(total), unit
        self.interval, self.step_interval = interval, step_interval
        self.done = 0
        self.item_seconds: list[float] = []
        self._name = ""
        self._began = self._item_began = self._last_line = self._last_step = time.perf_counter()
        self._bar: Progress | None = None
        self._items: TaskID | None = None
        self._steps: TaskID | None = None

    # ------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> "ProgressDisplay":
        self._began = self._item_began = time.perf_counter()
        if self.mode == "rich":
            self._start_bar()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _start_bar(self) -> None:
        console = Console(file=self.err)
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self._items = self._bar.add_task(self.unit, total=self.total or None, unit=self.unit)
        self._steps = self._bar.add_task("", total=1, unit="tiles", visible=False)
        self._bar.start()

    # ------------------------------------------------------------------------------ items
    @property
    def elapsed(self) -> float:
        """Seconds since the display started."""
        return time.perf_counter() - self._began

    def start(self, name: str) -> None:
        """An item begins: its time counts from now, and the step bar is reset."""
        self._name = name
        self._item_began = self._last_step = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._items, description=f"{self.unit} {name}",
                             total=self.total or None)
            self._bar.update(self._steps, completed=0, total=1, visible=False)

    def finish(self, name: str | None = None) -> float:
        """The current item is done; returns its seconds (since :meth:`start` or the last item)."""
        now = time.perf_counter()
        seconds = now - self._item_began
        self.item_seconds.append(seconds)
        self._item_began = now
        self.done += 1
        self._show_item(name or self._name, now)
        return seconds

    def update(self, done: int, total: int, name: str = "") -> None:
        """Callback form for loops that count themselves: ``done`` of ``total`` items are done."""
        self.total = int(total)
        self.done = int(done) - 1
        self.finish(name)

    def _show_item(self, name: str, now: float) -> None:
        if self._bar is not None:
            self._bar.update(self._items, completed=self.done, total=self.total or None,
                             description=f"{self.unit} {name}".rstrip())
            self._bar.update(self._steps, visible=False)
            return
        if self.mode != "plain" or self.interval is None:
            return
        if self.done < self.total and now - self._last_line < self.interval:
            return
        self._last_line = now
        rate = self.done / max(now - self._began, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        width = len(str(self.total))
        self.print(f"[{self.done:>{width}}/{self.total} {self.unit}] {rate:.2f}/s  "
                   f"eta {format_seconds(eta)}  {name}", err=True)

    # ------------------------------------------------------------------------------ steps
    def steps(self, done: int, total: int) -> None:
        """Callback for the steps of the current item (``progress(done, total)`` per tile)."""
        if self._bar is not None:
            self._bar.update(self._steps, completed=done, total=total, visible=total > 1,
                             description=f"  tiles of {self._name}")
            return
        if self.mode != "plain" or self.step_interval is None or total <= 1:
            return
        now = time.perf_counter()
        if now - self._last_step < self.step_interval:
            return
        self._last_step = now
        self.print(f"  {self._name}: tile {done}/{total}, "
                   f"{format_seconds(now - self._item_began)}", err=True)

    # ------------------------------------------------------------------------------ lines
    def print(self, text: str, err: bool = False) -> None:
        """Print a line (above the bar on a terminal; on stdout, or stderr with ``err``)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        stream = self.err if err else self.out
        stream.write(text + "\n")
        stream.flush()

    def summary(self) -> str:
        """``3 images in 12.3 s (4.10 s per image)``; the time per item is of finished items."""
        count = len(self.item_seconds)
        per = sum(self.item_seconds) / count if count else 0.0
        singular = self.unit[:-1] if self.unit.endswith("s") else self.unit
        return (f"{count} {self.unit if count != 1 else singular} in "
                f"{format_seconds(self.elapsed)} ({format_seconds(per)} per {singular})")
