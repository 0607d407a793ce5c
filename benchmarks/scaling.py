"""Scaling benchmark: latency, multiply-adds and peak memory of restoration from 256^2 to 2048^2.

Usage (from the repository root):

    .venv/bin/python benchmarks/scaling.py                 # interir-small sweep + 4000x3000 + paper model
    .venv/bin/python benchmarks/scaling.py --quick         # 256, 512, 1024 only, no paper model

What it measures, for ``interir-small`` (random weights: cost does not depend on them much; or
``--model default`` or any other shipped name, its trained weights), through
:func:`interir.inference.restore_tensor` with its automatic tiling (whole image up to 512 px,
512 px tiles with 64 px overlap above):

- median latency over ``--runs`` runs and milliseconds per megapixel;
- multiply-adds actually computed (all tiles, overlaps included) per megapixel, and, for
  comparison, what one untiled pass would cost per megapixel (counted, not run): the Kronecker
  products grow with the side length, tiling keeps them bounded;
- peak resident memory of a fresh process restoring one image of that size;
- the peak memory of restoring a 4000 x 3000 JPEG file end to end (read, restore, write);
- the paper-size ``interir`` at 256 and 512 (latency, MACs, memory).

The claim checked: ms per megapixel stays within +-25 % of its median across 256..2048, and the
4000 x 3000 restore peaks under 4 GB on the CPU. Results go to benchmarks/results/scaling.{json,md}
(``--out STEM`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, results_stem, write_results

import interir
from interir.inference import auto_overlap, auto_tile_size, plan_tiles, restore_tensor, size_multiple
from interir.profiling import count_macs, count_parameters, measure_peak_memory

MB = 2**20


def _smooth_image(height: int, width: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(7 * xx + 3 * yy), 0.5 + 0.3 * torch.cos(5 * yy + xx), 0.4 + 0.3 * xx * yy])
    return (base + 0.05 * torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


def tiled_macs(model, height: int, width: int) -> tuple[int, int]:
    """(MACs of the tiled restoration as run, number of tiles)."""
    tile = auto_tile_size(model)
    if height <= tile and width <= tile:
        return count_macs(model, (1, 3, height, width)), 1
    grid = plan_tiles(height, width, tile, auto_overlap(tile, size_multiple(model)), size_multiple(model))
    cache: dict[tuple[int, int], int] = {}
    total = 0
    for _, _, rows, cols in grid:
        key = (rows.stop - rows.start, cols.stop - cols.start)
        if key not in cache:
            cache[key] = count_macs(model, (1, 3) + key)
        total += cache[key]
    return total, grid.count


def time_restore(model, height: int, width: int, runs: int) -> list[float]:
    image = _smooth_image(height, width)
    restore_tensor(model, image[:, : min(height, 64), : min(width, 64)])  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        restore_tensor(model, image)
        times.append(time.perf_counter() - start)
    return times


def build_model(name: str) -> torch.nn.Module:
    """A shipped pretrained model by its name (``default``, ...), else the architecture ``name``
    with random weights."""
    if name in interir.list_pretrained():
        return interir.load_pretrained(name).eval()
    return interir.create_model(name).eval()


def sweep(name: str, sizes: list[int], runs: int, threads: int, memory: bool) -> dict:
    model = build_model(name)
    rows = []
    for side in sizes:
        mp = side * side / 1e6
        macs, tiles = tiled_macs(model, side, side)
        untiled = count_macs(model, (1, 3, side, side))
        n = runs if side <= 512 else max(1, runs - 1) if side <= 1024 else 1
        times = time_restore(model, side, side, n)
        latency = statistics.median(times)
        row = {
            "size": side, "megapixels": mp, "tiles": tiles, "runs": n, "latency_s": latency,
            "latency_runs_s": times, "ms_per_mp": latency * 1e3 / mp, "gmacs": macs / 1e9,
            "gmacs_per_mp": macs / 1e9 / mp, "untiled_gmacs_per_mp": untiled / 1e9 / mp,
        }
        if memory:
            mem = measure_peak_memory(model, (1, 3, side, side), "cpu", mode="restore", threads=threads)
            row["peak_mb"] = mem["peak_bytes"] / MB
            row["working_mb"] = mem["working_bytes"] / MB
        rows.append(row)
        print(f"{name} {side}x{side}: {tiles} tile(s), {latency:.2f} s, {row['ms_per_mp']:.0f} ms/MP, "
              f"{row['gmacs_per_mp']:.1f} GMAC/MP (untiled {row['untiled_gmacs_per_mp']:.1f}), "
              f"peak {row.get('peak_mb', float('nan')):.0f} MB", flush=True)
    per_mp = [r["ms_per_mp"] for r in rows]
    median = statistics.median(per_mp)
    spread = [v / median - 1 for v in per_mp]
    return {
        "model": name, "params": count_parameters(model), "auto_tile": auto_tile_size(model),
        "auto_overlap": auto_overlap(auto_tile_size(model), size_multiple(model)), "rows": rows,
        "ms_per_mp_median": median, "ms_per_mp_deviation_min": min(spread),
        "ms_per_mp_deviation_max": max(spread), "flat_within_25_percent": max(abs(s) for s in spread) <= 0.25,
    }


def large_file_restore(name: str, height: int, width: int, threads: int) -> dict:
    from PIL import Image

    model = build_model(name)
    with tempfile.TemporaryDirectory(prefix="interir-scaling-") as tmp:
        path = Path(tmp) / f"photo_{width}x{height}.jpg"
        arr = (_smooth_image(height, width).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(path, quality=92)
        del arr
        start = time.perf_counter()
        mem = measure_peak_memory(model, None, "cpu", mode="restore_file", input_path=path, threads=threads)
        seconds = time.perf_counter() - start
    tile = auto_tile_size(model)
    grid = plan_tiles(height, width, tile, auto_overlap(tile, size_multiple(model)), size_multiple(model))
    out = {
        "model": name, "height": height, "width": width, "tiles": grid.count, "seconds_total": seconds,
        "peak_mb": mem["peak_bytes"] / MB, "working_mb": mem["working_bytes"] / MB,
        "under_4_gb": mem["peak_bytes"] < 4 * 2**30,
    }
    print(f"{name} {width}x{height} file: {grid.count} tiles, {seconds:.0f} s (process incl. start-up), "
          f"peak {out['peak_mb']:.0f} MB", flush=True)
    return out


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# Scaling benchmark",
        "",
        f"{env['machine']}, torch {env['torch']}, {env['threads']} thread(s), "
        f"{env['cpu_capability']}; {result['date']}.",
        "",
    ]
    for sw in result["sweeps"]:
        lines += [
            f"## {sw['model']} ({sw['params'] / 1e6:.2f} M parameters), restore_tensor with automatic tiling "
            f"({sw['auto_tile']} px tiles, {sw['auto_overlap']} px overlap above {sw['auto_tile']} px)",
            "",
            "| size | tiles | latency (s) | ms / MP | GMAC / MP (as run) | GMAC / MP untiled (counted) | peak memory (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sw["rows"]:
            peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "–"
            lines.append(
                f"| {r['size']}² | {r['tiles']} | {r['latency_s']:.2f} | {r['ms_per_mp']:.0f} | "
                f"{r['gmacs_per_mp']:.1f} | {r['untiled_gmacs_per_mp']:.1f} | {peak} |"
            )
        lines += [
            "",
            f"ms per megapixel: median {sw['ms_per_mp_median']:.0f}, range "
            f"{100 * sw['ms_per_mp_deviation_min']:+.0f} % to {100 * sw['ms_per_mp_deviation_max']:+.0f} % "
            f"({'within' if sw['flat_within_25_percent'] else 'NOT within'} ±25 %).",
            "",
        ]
    if result.get("large"):
        lg = result["large"]
        lines += [
            f"## {lg['width']} x {lg['height']} JPEG, end to end (read, restore, write), {lg['model']}",
            "",
            f"{lg['tiles']} tiles; peak resident memory of the process **{lg['peak_mb']:.0f} MB** "
            f"({'under' if lg['under_4_gb'] else 'OVER'} 4 GB), of which {lg['working_mb']:.0f} MB "
            f"above the loaded model and runtime; {lg['seconds_total']:.0f} s including process start.",
            "",
        ]
    if result.get("paper"):
        lines += [
            "## Paper-size interir (whole image)",
            "",
            "| size | params (M) | GMACs | latency (s) | peak memory (MB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in result["paper"]:
            peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "–"
            lines.append(f"| {r['size']}² | {r['params'] / 1e6:.2f} | {r['gmacs']:.1f} | {r['latency_s']:.2f} | {peak} |")
        lines.append("")
    lines += [
        "Peak memory is the peak resident set size of a fresh process (Python, torch and the model included). "
        "MACs count convolutions and matrix products (FlopCounterMode). Random weights: cost does not depend on them.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="interir-small")
    parser.add_argument("--sizes", default="256,512,1024,1536,2048")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: stable figures on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="256,512,1024, no 4000x3000 file, no paper model")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-paper", action="store_true")
    parser.add_argument("--no-large", action="store_true")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes = [s for s in sizes if s <= 1024]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "environment": {**environment(), "threads": args.threads,
                        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores"},
        "sweeps": [sweep(args.model, sizes, args.runs, args.threads, not args.no_memory)],
    }
    if not (args.quick or args.no_large):
        result["large"] = large_file_restore(args.model, 3000, 4000, args.threads)
    if not (args.quick or args.no_paper):
        paper = interir.create_model("interir").eval()
        rows = []
        for side in (256, 512):
            times = time_restore(paper, side, side, 1 if side > 256 else 2)
            row = {"size": side, "params": count_parameters(paper), "gmacs": count_macs(paper, (side, side)) / 1e9,
                   "latency_s": statistics.median(times)}
            if not args.no_memory:
                row["peak_mb"] = measure_peak_memory(paper, (1, 3, side, side), "cpu", mode="restore",
                                                     threads=args.threads)["peak_bytes"] / MB
            rows.append(row)
            print(f"interir {side}x{side}: {row['gmacs']:.1f} GMACs, {row['latency_s']:.2f} s, "
                  f"peak {row.get('peak_mb', float('nan')):.0f} MB", flush=True)
        result["paper"] = rows
    paths = write_results(args.out, result, to_markdown(result), __file__, argv)
    print("wrote " + " and ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
