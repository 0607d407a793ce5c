"""What a run ran on: package version, git commit, software and hardware.

Saved next to every training run (``run.json``) so a result can be traced to its code and machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import torch

from interir._version import __version__

__all__ = ["git_info", "environment_info"]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit, branch and dirty flag of the git checkout holding ``path``.

    Args:
        path: a file or folder inside the checkout; defaults to the installed ``interir`` package
            (so an editable install reports the repository it was installed from).

    Returns:
        ``{"commit": sha or None, "branch": str or None, "dirty": bool or None,
        "root": str or None}``; all ``None`` when git or the checkout is missing (e.g. a wheel).
    """
    if path is None:
        path = Path(__file__).resolve().parent
    path = Path(path)
    cwd = path if path.is_dir() else path.parent
    root = _git(["rev-parse", "--show-toplevel"], cwd)
    if root is None:
        return {"commit": None, "branch": None, "dirty": None, "root": None}
    commit = _git(["rev-parse", "HEAD"], cwd)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {
        "commit": commit or None,
        "branch": branch or None,
        "dirty": None if status is None else bool(status),
        "root": root,
    }


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_info() -> dict[str, Any]:
    """Versions and hardware: Python, platform, torch (+ CUDA devices), numpy, CPU count, threads.

    Returns:
        A JSON-serialisable dict.
    """
    info: dict[str, Any] = {
        "interir": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
    for var in ("OMP_NUM_THREADS", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "CUDA_VISIBLE_DEVICES"):
        if var in os.environ:
            info.setdefault("env", {})[var] = os.environ[var]
    return info
