"""Model speed on this machine: parameters, multiply-adds, latency, GFLOP/s, peak memory.

    .venv/bin/python benchmarks/model_speed.py                       # every registered model
    .venv/bin/python benchmarks/model_speed.py --models interir nafnet --sizes 256 512

For each model and square size, batch 1, eval mode, ``torch.inference_mode``: the median forward
latency over ``--runs`` runs after a warm-up, achieved GFLOP/s = 2 x multiply-adds / latency, and
the peak resident memory of a fresh process running one forward pass. Writes
``benchmarks/results/model_speed.{json,md}`` (``--out STEM``). Time it alone: anything else running on the 2 cores
changes the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import results_stem, write_results

import interir
from interir.profiling import count_macs, count_parameters, measure_latency, measure_peak_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 512])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem: writes STEM.json and STEM.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or interir.list_models()
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = interir.create_model(name).eval()
        params = count_parameters(model)
        for size in args.sizes:
            shape = (1, 3, size, size)
            macs = count_macs(model, shape)
            times = measure_latency(model, shape, runs=args.runs, warmup=1)
            latency = statistics.median(times)
            peak = None if args.no_memory else measure_peak_memory(model, shape, threads=args.threads)
            row = {
                "model": name, "size": size, "params": params, "macs": macs, "latency_s": latency,
                "gflops_per_s": 2 * macs / latency / 1e9,
                "peak_rss_mb": None if peak is None else round(max(peak.values()) / 2**20, 1),
            }
            rows.append(row)
            print(
                f"{name:22s} {size:5d}  {params / 1e6:7.3f} M  {macs / 1e9:8.2f} GMAC  "
                f"{latency * 1e3:9.1f} ms  {row['gflops_per_s']:6.1f} GFLOP/s  peak {row['peak_rss_mb']} MB",
                flush=True,
            )
    lines = [
        f"Model speed, batch 1, CPU ({torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{torch.backends.cpu.get_cpu_capability()}), median of {args.runs} runs, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| model | size | params (M) | GMAC | latency (ms) | GFLOP/s | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.2f} | "
            f"{r['latency_s'] * 1e3:.1f} | {r['gflops_per_s']:.1f} | {r['peak_rss_mb'] if r['peak_rss_mb'] is not None else '-'} |"
        )
    write_results(args.out, {"runs": args.runs, "date": time.strftime("%Y-%m-%d"), "rows": rows},
                  "\n".join(lines), __file__)


if __name__ == "__main__":
    main()
