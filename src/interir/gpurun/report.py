"""The output folder: what the device tool brings back, inside its limits.

The tool returns at most 8 files of at most 16 MiB each, 64 MiB together. The run keeps four
of them for ``report.json``, ``config.yaml``, ``metrics.jsonl`` and ``train.log`` (the logs cut
to their last MiB) and gives the rest to the weights (:mod:`interir.gpurun.weights`).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from interir.gpurun.weights import MiB
from interir.utils.env import cpu_name
from interir.utils.files import atomic_write_text

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "LOG_BYTES", "RUN_FILES", "weights_room",
           "write_report", "copy_tail", "out_files", "device_info"]

MAX_FILES = 8
MAX_FILE_BYTES = 16 * MiB
MAX_TOTAL_BYTES = 64 * MiB
#: The most bytes kept of each log copied back.
LOG_BYTES = 1 * MiB
#: Files of the training run folder copied back.
RUN_FILES = ("config.yaml", "metrics.jsonl", "train.log")


def weights_room() -> tuple[int, int]:
    """``(files, bytes)`` left for the weights after the report and the run files."""
    others = 1 + len(RUN_FILES)
    return MAX_FILES - others, MAX_TOTAL_BYTES - others * LOG_BYTES


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` (atomically, so a run killed mid-write leaves the previous one)."""
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")


def copy_tail(src: Path, dst: Path, limit: int = LOG_BYTES) -> Path:
    """Copy ``src`` to ``dst``; a larger file keeps only its last ``limit`` bytes, from a line start."""
    data = src.read_bytes()
    if len(data) > limit:
        data = data[-limit:]
        data = data[data.find(b"\n") + 1:]
    dst.write_bytes(data)
    return dst


def out_files(out: Path) -> dict[str, Any]:
    """The files in ``out`` with their sizes, and whether they fit the tool's return limits."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    listed = [{"name": str(p.relative_to(out)), "bytes": p.stat().st_size} for p in files]
    total = sum(f["bytes"] for f in listed)
    fits = len(listed) <= MAX_FILES and total <= MAX_TOTAL_BYTES and all(
        f["bytes"] <= MAX_FILE_BYTES for f in listed)
    return {"files": listed, "total_bytes": total, "fits_return_limits": fits}


def device_info(device: torch.device) -> dict[str, Any]:
    """What ran the measurements: the GPU (name, memory, capability) or the CPU, and versions."""
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "cpu": cpu_name(),
                            "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = info["cpu"]
    return info
