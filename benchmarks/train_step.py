"""One training step, timed by parts: forward + loss, backward, optimizer (Adam + EMA), and the
data pipeline apart, for each model, patch size and execution mode.

Modes:
- ``fp32``: the default.
- ``bf16``: ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` around forward + loss.
- ``cl``: channels-last model and input.
- ``shifted``: the explainable conv as trained before issue 25 (the shifted multiply-add form and
  the cumulative-sum pooling, today used only when exporting): the "before" of the fast step.
- ``compile``: ``torch.compile`` of the model (the compile time is reported apart and capped by
  ``--compile-timeout``).

Modes of one model are interleaved step by step (A B A B ...), so a load change on a shared
machine hits all of them alike; the median over ``--steps`` timed steps is reported.

    .venv/bin/python benchmarks/train_step.py --models interir-small nafnet-small --patch 64 128
    .venv/bin/python benchmarks/train_step.py --modes fp32 compile --compile-timeout 900

Writes benchmarks/results/train_step.{json,md} (``--out STEM`` elsewhere, e.g.
``--out benchmarks/results/train_step_rematch``) through benchmarks/_common.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import torch

import interir
import interir.models.explainable_conv as xconv_module
from interir.config import ConfigError, load_config
from _common import environment, results_stem, write_results
from interir.data.training import TrainingBatches

MODES = ("fp32", "bf16", "cl", "shifted", "compile")


@contextlib.contextmanager
def mode_context(mode: str):
    """Autocast for bf16; the export-time forms of the explainable conv for ``shifted``."""
    if mode == "bf16":
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            yield
    elif mode == "shifted":
        original = xconv_module.is_exporting
        xconv_module.is_exporting = lambda: True
        try:
            yield
        finally:
            xconv_module.is_exporting = original
    else:
        yield


class Case:
    """A model, its optimizer and EMA copy, and a fixed batch, for one mode."""

    def __init__(self, model_name: str, mode: str, batch: int, patch: int) -> None:
        torch.manual_seed(0)
        self.mode = mode
        self.model = interir.create_model(model_name).train()
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.optim = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.x = torch.rand(batch, 3, patch, patch)
        self.y = torch.rand(batch, 3, patch, patch)
        if mode == "cl":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.forward = self.model
        self.compile_s = None
        if mode == "compile":
            self.forward = torch.compile(self.model)

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        with mode_context(self.mode):
            out = self.forward(self.x)
            loss = (out.float() - self.y).abs().mean() + 0.1 * (
                torch.fft.rfft2(out.float()) - torch.fft.rfft2(self.y)).abs().mean()
        t1 = time.perf_counter()
        self.optim.zero_grad(set_to_none=True)
        with mode_context(self.mode):
            loss.backward()
        t2 = time.perf_counter()
        self.optim.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.model.parameters()], 1 - 0.999)
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "total": t3 - t0}


def data_seconds_per_batch(batch: int, patch: int, batches: int = 10) -> float | None:
    """The training data pipeline alone (decode, crop, degrade; ``num_workers: 0`` as the CPU
    configs): seconds per batch, or None when the training images are not beside the checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        cfg = load_config(root / "configs" / "cpu-small.yaml", [f"data.patch_size={patch}", f"train.batch_size={batch}"])
        data = TrainingBatches(cfg, torch.device("cpu"), 0, 1, batch, 0)
    except (ConfigError, FileNotFoundError):
        return None
    data.get(0)
    start = time.perf_counter()
    for step in range(1, batches + 1):
        data.get(step)
    return (time.perf_counter() - start) / batches


class CompileTimeout(Exception):
    """Raised by SIGALRM when compiling takes longer than ``--compile-timeout``."""


expired = threading.Event()  # set when the alarm went off (the exception may arrive wrapped)


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`CompileTimeout` in this (main) thread after ``seconds`` (None: no limit)."""
    if not seconds:
        yield
        return

    def _expired(signum, frame):
        expired.set()
        raise CompileTimeout()

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def measure(model_name: str, modes: list[str], batch: int, patch: int, steps: int, warmup: int,
            compile_timeout: float | None = None) -> list[dict]:
    cases, timed_out = {}, {}
    for mode in modes:
        start = time.perf_counter()
        case = Case(model_name, mode, batch, patch)
        expired.clear()
        try:
            with time_limit(compile_timeout if mode == "compile" else None):
                for _ in range(warmup):
                    case.step()
        except Exception:  # torch.compile wraps the alarm's exception in its own
            if not expired.is_set():
                raise
            timed_out[mode] = time.perf_counter() - start
            print(f"{model_name:14s} p{patch:<4d} {mode:8s} compile did not finish in {timed_out[mode]:.0f} s",
                  flush=True)
            continue
        if mode == "compile":
            case.compile_s = time.perf_counter() - start
        cases[mode] = case
    modes = [m for m in modes if m in cases]
    times = {mode: [] for mode in modes}
    for _ in range(steps):
        for mode, case in cases.items():
            times[mode].append(case.step())
    rows = []
    for mode in modes:
        parts = {k: statistics.median(t[k] for t in times[mode]) for k in ("forward", "backward", "optimizer", "total")}
        rows.append({
            "model": model_name, "mode": mode, "batch": batch, "patch": patch, "steps": steps,
            "images_per_s": batch / parts["total"], **{f"{k}_ms": 1000 * v for k, v in parts.items()},
            "compile_s": cases[mode].compile_s,
        })
        print(f"{model_name:14s} p{patch:<4d} {mode:8s} {rows[-1]['images_per_s']:7.2f} img/s "
              f"(fwd {parts['forward']*1e3:.0f} ms, bwd {parts['backward']*1e3:.0f}, opt {parts['optimizer']*1e3:.0f})",
              flush=True)
    for mode, seconds in timed_out.items():
        rows.append({"model": model_name, "mode": mode, "batch": batch, "patch": patch, "steps": 0,
                     "images_per_s": None, "compile_s": None, "compile_timeout_s": round(seconds, 1)})
    return rows


def markdown(rows: list[dict], info: dict) -> str:
    """The results table; ``info`` holds the threads, loads and data-pipeline times."""
    env = environment()
    lines = [
        "# One training step by parts", "",
        f"On {env['cpu']} ({env['cpu_capability']}), torch {env['torch']}, "
        f"{info['threads']} thread(s); load average before/after {info['load_before']} / {info['load_after']}. "
        "Random batches (the data pipeline is timed apart); medians over the timed steps, modes interleaved.", "",
        "| model | patch | batch | mode | images/s | forward ms | backward ms | optimizer+EMA ms | vs fp32 |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["images_per_s"] is None:
            lines.append(f"| {r['model']} | {r['patch']} | {r['batch']} | {r['mode']} | did not compile "
                         f"in {r['compile_timeout_s']:.0f} s | | | | |")
            continue
        base = next(b for b in rows if (b["model"], b["patch"], b["mode"]) == (r["model"], r["patch"], "fp32"))
        lines.append(
            f"| {r['model']} | {r['patch']} | {r['batch']} | {r['mode']} | {r['images_per_s']:.2f} | "
            f"{r['forward_ms']:.0f} | {r['backward_ms']:.0f} | {r['optimizer_ms']:.0f} | "
            f"{r['images_per_s'] / base['images_per_s']:.2f}x |"
        )
    compiled = [r for r in rows if r.get("compile_s")]
    if compiled:
        lines += ["", "Compile and warm-up of `torch.compile`: " + ", ".join(
            f"{r['model']} patch {r['patch']}: {r['compile_s']:.0f} s" for r in compiled)]
    if info.get("data_s_per_batch"):
        lines += ["", "Data pipeline alone: " + ", ".join(
            f"patch {p}: {s * 1000:.0f} ms per batch" for p, s in info["data_s_per_batch"].items() if s)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["interir-small", "nafnet-small"])
    parser.add_argument("--patch", nargs="+", type=int, default=[64])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["fp32", "shifted", "bf16", "cl"], choices=MODES)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile-timeout", type=float, default=None,
                        help="seconds the compile mode may take to compile and warm up (default: no limit)")
    parser.add_argument("--out", default=str(results_stem(__file__)), help="results stem (.json and .md are added)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = {"threads": args.threads, "load_before": round(os.getloadavg()[0], 2)}
    rows = []
    for patch in args.patch:
        for model_name in args.models:
            modes = [m for m in args.modes if not (m == "shifted" and not model_name.startswith("interir"))]
            rows += measure(model_name, modes, args.batch, patch, args.steps, args.warmup, args.compile_timeout)
    info["load_after"] = round(os.getloadavg()[0], 2)
    info["data_s_per_batch"] = {p: data_seconds_per_batch(args.batch, p) for p in args.patch}
    paths = write_results(Path(args.out), {"info": info, "rows": rows}, markdown(rows, info), __file__)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()
