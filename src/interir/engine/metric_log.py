"""What a training run reports: the metric files, the log, the terminal's progress bar.

- :class:`MetricsLog` - training and validation rows to ``metrics.csv``, ``metrics.jsonl`` and
  TensorBoard (rank 0); on resume, rows logged after the checkpoint are dropped first.
- :class:`IntervalMeter` - mean losses and images per second over each logging interval.
- :class:`Progress` - a rich progress bar on a terminal, nothing otherwise.
- :func:`run_logging` - routes the ``interir`` loggers to ``train.log`` and the terminal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from interir.engine.checkpoint import atomic_write_text

__all__ = ["CSV_FIELDS", "MetricsLog", "IntervalMeter", "Progress", "run_logging", "format_eta"]

log = logging.getLogger("interir.train")

CSV_FIELDS = (
    "kind", "step", "loss", "l1", "fft", "lr", "images_per_s", "grad_norm", "psnr", "ssim",
    "val_images", "elapsed_s", "time",
)


class MetricsLog:
    """Rows to ``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard), on rank 0."""

    def __init__(self, run_dir: Path, tensorboard: str, resume_step: int | None) -> None:
        self.csv_path, self.jsonl_path = run_dir / "metrics.csv", run_dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._jsonl = open(self.jsonl_path, "a")
        self._tb = _tensorboard(run_dir / "tb", tensorboard)

    def _truncate(self, step: int) -> None:
        """Drop rows logged after ``step`` by an interrupted session (they will be redone)."""
        if self.jsonl_path.exists():
            keep = [ln for ln in _jsonl_rows(self.jsonl_path)
                    if json.loads(ln).get("step", 0) <= step]
            atomic_write_text(self.jsonl_path, "".join(ln + "\n" for ln in keep))
        if self.csv_path.exists():
            rows = [r for r in _csv_rows(self.csv_path) if int(r["step"]) <= step]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        row = {"kind": kind, "step": step, **values, "time": round(time.time(), 3)}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        exact = ("time", "elapsed_s")
        self._csv.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k not in exact else v)
                            for k, v in row.items()})
        self._csv_file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("elapsed_s",):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        self._csv_file.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _complete_lines(path: Path) -> list[str]:
    """The lines of a log file, without a torn last line (no newline: the writer was killed or
    the disk was full), which is dropped with a warning; that row is redone on resume anyway."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        log.warning("%s: dropping its last line, cut short by an interrupted write: %r", path,
                    lines[-1][:80])
        lines.pop()
    return [ln.rstrip("\r\n") for ln in lines]


def _bad_row(path: Path, number: int, problem: str) -> ValueError:
    return ValueError(
        f"{path}, line {number}: {problem}; the file was damaged. Fix: delete that line (and any "
        "after it) and run again with --resume"
    )


def _jsonl_rows(path: Path) -> list[str]:
    """The non-empty, valid JSON lines of ``metrics.jsonl`` (a torn last line dropped)."""
    rows = []
    for number, line in enumerate(_complete_lines(path), 1):
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise _bad_row(path, number, f"not a JSON row ({e})") from None
        rows.append(line)
    return rows


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` (a torn last line dropped), each with an integer step."""
    rows = list(csv.DictReader(_complete_lines(path)))
    for number, row in enumerate(rows, 2):
        try:
            int(row.get("step") or "")
        except ValueError:
            raise _bad_row(path, number, f"step {row.get('step')!r} is not a number") from None
    return rows


def _tensorboard(folder: Path, mode: str) -> Any:
    """A TensorBoard ``SummaryWriter`` for ``output.tensorboard`` = ``mode``, or ``None``: "off",
    or "auto" without the package (imported here: an optional, slow-to-import dependency)."""
    if mode == "off":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        if mode == "on":
            raise ImportError(
                'output.tensorboard=on needs the tensorboard package: pip install "interir[log]"'
            ) from e
        log.debug("tensorboard not installed; metrics go to CSV/JSONL only")
        return None
    return SummaryWriter(str(folder))


class IntervalMeter:
    """Mean losses (total, l1, fft) and throughput over each logging interval of a session.

    :meth:`add` after every step; :meth:`close` at the end of an interval returns the mean losses
    (averaged over the processes) and the global images per second, and empties the sums;
    :meth:`restart_clock` leaves the time of validations, checkpoints and log writing out.
    """

    def __init__(self, device: torch.device, global_batch: int) -> None:
        self.sums = torch.zeros(3, device=device)
        self.steps = 0
        self.global_batch = global_batch
        self.grad_norm: torch.Tensor | None = None  # the last step's, when clipping
        self.rates: list[float] = []
        self.restart_clock()

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def add(self, losses: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        self.sums += losses
        self.steps += 1
        if grad_norm is not None:
            self.grad_norm = grad_norm

    def close(self, world_size: int = 1) -> tuple[list[float], float]:
        """``(mean [loss, l1, fft] of the interval, images per second)``."""
        if world_size > 1:
            torch.distributed.all_reduce(self.sums)
            self.sums /= world_size
        mean = (self.sums / self.steps).tolist()
        ips = self.global_batch * self.steps / max(time.perf_counter() - self.start, 1e-9)
        self.rates.append(ips)
        self.sums.zero_()
        self.steps = 0
        return mean, ips

    def session_rate(self) -> float | None:
        """Mean images per second of the session (the first interval left out as warm-up when
        there are several), or ``None`` before the first interval."""
        if not self.rates:
            return None
        rates = self.rates[1:] if len(self.rates) > 1 else self.rates
        return sum(rates) / len(rates)


class Progress:
    """A rich progress bar on a terminal (rank 0), nothing otherwise (log lines do the job)."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.bar = None
        self.console = None
        if not enabled:
            return
        self.console = Console(stderr=True)
        self.bar = RichProgress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[ips]} img/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.task = self.bar.add_task("train", total=total, completed=start, loss="-", lr="-", ips="-")

    def __enter__(self) -> "Progress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, step: int, **fields: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **fields)


@contextlib.contextmanager
def run_logging(run_dir: Path | None, is_main: bool, console=None) -> Iterator[None]:
    """Route the ``interir`` loggers to ``train.log`` and the terminal for this run."""
    logger = logging.getLogger("interir")
    saved = (logger.level, logger.propagate)
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if is_main and run_dir is not None:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(fmt)
        handlers.append(fh)
    if console is not None:
        ch: logging.Handler = RichHandler(console=console, show_path=False, show_level=False)
    else:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(logging.Formatter(
            "%(asctime)s %(message)s" if is_main else "%(asctime)s [rank %(rank)s] %(levelname)s %(message)s",
            "%H:%M:%S",
        ))
        ch.addFilter(_RankFilter())
    ch.setLevel(logging.INFO if is_main else logging.WARNING)
    handlers.append(ch)
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = os.environ.get("RANK", "0")
        return True


def format_eta(seconds: float) -> str:
    """``"1h05m"`` or ``"4m07s"``."""
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
