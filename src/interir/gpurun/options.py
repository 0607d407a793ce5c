"""Options of the device run, their per-device defaults, and its wall-clock budget."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Budget", "build_parser", "parse_options", "GPU_BENCH", "CPU_BENCH", "CPU_TRAIN_SETTINGS"]

#: Benchmark models, sizes and timed runs on a GPU: the paper-size networks (issue 19).
GPU_BENCH = {"bench_models": ["interir", "nafnet"], "bench_sizes": [256, 512], "bench_runs": 10}
#: The same on the CPU, where the dry run only checks the plumbing: the trained model and a small
#: NAFNet at a tiny size.
CPU_BENCH = {"bench_models": None, "bench_sizes": [64], "bench_runs": 3}
#: Training settings that make the paper recipe bearable on a CPU (``--set`` still wins).
CPU_TRAIN_SETTINGS = ["train.batch_size=4", "data.patch_size=64", "data.num_workers=0"]

#: When each phase must end at the latest, as a share of the budget from the start of the run
#: (installation included). A phase that ends early leaves its time to the next one.
PHASE_ENDS = {"tests": 0.25, "bench": 0.45}
#: Time kept after training for scoring and writing the results: this share of the budget ...
RESERVE_SHARE = 0.1
#: ... and at least this many seconds.
RESERVE_MIN_S = 20.0


@dataclass
class Budget:
    """A wall-clock budget of ``total_s`` seconds that started at ``start`` (``time.time()``)."""

    total_s: float
    start: float

    def elapsed(self) -> float:
        return time.time() - self.start

    def left(self) -> float:
        """Seconds until the whole budget is spent (negative once it is)."""
        return self.total_s - self.elapsed()

    def until(self, share: float, floor: float = 0.0) -> float:
        """Seconds until ``share`` of the budget has passed, but at least ``floor``."""
        return max(floor, share * self.total_s - self.elapsed())

    def for_training(self, floor: float = 10.0) -> float:
        """Seconds training may take: what is left minus the reserve for scoring and writing."""
        reserve = max(RESERVE_MIN_S, RESERVE_SHARE * self.total_s)
        return max(floor, self.left() - reserve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interir.gpurun",
        description="CUDA tests, speed table, a timed training run and its scores, in one budget "
                    "(docs/gpu.md). Run through scripts/device_run.sh.",
    )
    add = parser.add_argument
    add("--device", default="auto", help="auto (CUDA when available), cuda or cpu")
    add("--minutes", type=float, default=8.0, help="wall-clock budget of the whole run")
    add("--started-at", type=float, default=None, help="epoch seconds the budget started (the shell "
        "script passes its own start, so installing counts)")
    add("--out", type=Path, default=None, help="folder for what comes back (default: $OUT, else "
        "WORK/out)")
    add("--work", type=Path, default=None, help="scratch folder for run folders and logs "
        "(default: runs/device-run-<time>)")
    add("--data", type=Path, default=Path(".gpu-data/train"), help="clean training images, laid out "
        "like the shared training folder (bsds432/, photos/)")
    add("--model", default="interir", help="registered model to train")
    add("--model-opt", action="append", default=[], metavar="KEY=VALUE",
        help="model config field (repeatable), e.g. stage_update=add")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="training config override (repeatable), e.g. train.batch_size=16")
    add("--config", type=Path, default=Path("configs/paper-mdir.yaml"), help="training recipe")
    add("--val-config", type=Path, default=Path("configs/cpu-default-stage5.yaml"),
        help="config whose data.val gives the validation pairs (the shipped default's)")
    add("--compare", default="default", help="model spec scored on the same pairs ('' for none)")
    add("--max-steps", type=int, default=None, help="train at most this many steps")
    add("--bench-models", nargs="+", default=None)
    add("--bench-sizes", nargs="+", type=int, default=None)
    add("--bench-runs", type=int, default=None)
    add("--tests", nargs="+", default=["tests"], help="paths given to pytest -m cuda")
    add("--skip", nargs="+", default=[], choices=["tests", "bench", "train"], help="phases to leave out")
    add("--install", default="unknown", help="how the shell script installed interir (recorded)")
    return parser


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and fill the device-dependent defaults (``opts.device`` becomes a torch device)."""
    opts = build_parser().parse_args(argv)
    device = "cuda" if opts.device == "auto" and torch.cuda.is_available() else opts.device
    if device == "auto":
        device = "cpu"
    opts.device = torch.device(device)
    if opts.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch sees no GPU; use --device cpu")
    defaults = GPU_BENCH if opts.device.type == "cuda" else CPU_BENCH
    for key, value in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    if opts.bench_models is None:
        opts.bench_models = [opts.model, "nafnet-small"]
    if opts.started_at is None:
        opts.started_at = time.time()
    if opts.work is None:
        opts.work = Path("runs") / time.strftime("device-run-%Y%m%d-%H%M%S")
    return opts
