"""What every benchmark script shares: where its results go, the environment record, a timer, and
writing the results so that each file says how to make it again.

A script ``benchmarks/<name>.py`` writes ``benchmarks/results/<name>.json`` and ``<name>.md``
(:func:`results_stem`), wherever it is started from; ``--out STEM`` replaces the stem (the
suffixes are added). The Markdown starts with the command that reproduces it
(:func:`reproduce_line`), and the JSON holds the same command and
:func:`interir.utils.env.environment_info` with the CPU's vector capability beside it
(:func:`environment`), the one environment record of the project.

Scripts import it as ``from _common import ...``: Python puts the script's folder first on
``sys.path`` when it runs ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from interir.utils.env import cpu_name, environment_info
from interir.utils.files import atomic_write_text

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"

__all__ = ["BENCHMARKS", "RESULTS", "results_stem", "command", "reproduce_line", "environment",
           "time_calls", "median_ms", "write_results"]


def results_stem(script: str | Path) -> Path:
    """``benchmarks/results/<script name>`` (no suffix) for ``__file__`` of a benchmark script."""
    return RESULTS / Path(script).stem


def command(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The shell command that ran ``script`` with ``argv`` (default: this process's arguments),
    written from the repository root: ``python benchmarks/<name>.py ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


def reproduce_line(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The Markdown line a results file starts with: how to make it again."""
    return (f"Made by `{command(script, argv)}` (from the repository root; "
            f"`.venv/bin/python` for `python`).")


def environment() -> dict[str, Any]:
    """:func:`interir.utils.env.environment_info` plus ``cpu`` (the processor's model name) and
    ``cpu_capability`` (the vector ISA torch dispatches to: ``AVX2``, ``AVX512``, ...), which any
    timing depends on."""
    return {**environment_info(), "cpu": cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    Returns:
        One duration per timed call, in seconds, in call order.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: Sequence[float]) -> float:
    """The median of durations in seconds, in milliseconds."""
    return statistics.median(times) * 1e3


def write_results(stem: Path, data: Any, markdown: str | None, script: str | Path,
                  argv: Sequence[str] | None = None) -> list[Path]:
    """Write ``<stem>.json`` (``{"command", "environment", **data}`` when ``data`` is a dict;
    skipped when ``data`` is None) and ``<stem>.md`` (``markdown`` with the :func:`reproduce_line`
    under its first ``# `` heading, or first when it has none; skipped when ``markdown`` is None),
    atomically. Returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        data = {"command": command(script, argv), "environment": environment(), **data}
    paths = []
    if data is not None:
        paths.append(atomic_write_text(stem.with_suffix(".json"),
                                       json.dumps(data, indent=1) + "\n", fsync=False))
    if markdown is not None:
        head, body = ("", markdown)
        if markdown.startswith("# "):
            head, _, body = markdown.partition("\n")
            head, body = head + "\n\n", body.lstrip("\n")
        text = head + reproduce_line(script, argv) + "\n\n" + body.rstrip("\n") + "\n"
        paths.append(atomic_write_text(stem.with_suffix(".md"), text, fsync=False))
    return paths
