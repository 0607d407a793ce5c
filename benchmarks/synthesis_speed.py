"""Synthesis throughput: images per second for each of the seven degradation combinations.

Times ``DegradationPipeline((combination,))(batch, generator)`` (sampling + applying) on a
``(16, 3, 256, 256)`` batch, i.e. what a training step pays for on-the-fly degradation.

Usage:
    .venv/bin/python benchmarks/synthesis_speed.py                 # CPU, torch default threads
    .venv/bin/python benchmarks/synthesis_speed.py --threads 1 2   # several thread counts
    .venv/bin/python benchmarks/synthesis_speed.py --device cuda --rng-device same

Writes benchmarks/results/synthesis_speed.{json,md} (``--out STEM`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from _common import results_stem, write_results

from interir.degradations import COMBINATIONS, DegradationPipeline
from interir.utils.env import cpu_name


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(combination: str, batch: int, size: int, device: str, rng_device: str,
          repeats: int, min_time: float) -> dict:
    pipe = DegradationPipeline((combination,), rng_device=rng_device)
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, size, size, generator=g).to(device)
    for _ in range(2):  # warm-up (FFT plans, allocator)
        pipe(clean, g)
    _sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        out, _ = pipe(clean, g)
        _sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "combination": combination,
        "batch_ms_median": round(med * 1000, 2),
        "batch_ms_min": round(min(times) * 1000, 2),
        "images_per_s": round(batch / med, 1),
        "runs": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rng-device", default="cpu", choices=["cpu", "same"])
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="torch CPU thread counts to try (default: torch's default)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per combination")
    ap.add_argument("--out", type=Path, default=results_stem(__file__),
                    help="results stem: writes STEM.json and STEM.md")
    args = ap.parse_args(argv)

    thread_list = args.threads or [torch.get_num_threads()]
    runs = []
    for n in thread_list:
        torch.set_num_threads(n)
        for c in COMBINATIONS:
            r = bench(c, args.batch, args.size, args.device, args.rng_device, args.repeats,
                      args.min_time)
            r["threads"] = n
            runs.append(r)
            print(f"threads={n} {c:16s} {r['images_per_s']:8.1f} img/s "
                  f"({r['batch_ms_median']:.1f} ms / batch of {args.batch})", flush=True)

    info = {
        "batch": args.batch,
        "size": args.size,
        "device": args.device,
        "rng_device": args.rng_device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "results": runs,
    }

    lines = [
        "# Synthesis speed",
        "",
        "Sampling + applying `DegradationPipeline` on a "
        f"{args.batch}x3x{args.size}x{args.size} batch, device `{args.device}` "
        f"({info['gpu'] or info['cpu']}, {info['cpu_count']} cores), torch {info['torch']}, "
        f"random fields drawn on `{args.rng_device}`. Median over >= {args.repeats} runs.",
        "",
        "| combination | threads | images/s | ms / batch |",
        "|---|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['combination']} | {r['threads']} | {r['images_per_s']:.1f} | "
                     f"{r['batch_ms_median']:.1f} |")
    lines += ["", f"Load average at the end of the run: {info['load_average_at_end']} "
              "(other processes shared the CPU when it is above the core count)."]
    write_results(args.out, info, "\n".join(lines), __file__, argv)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
