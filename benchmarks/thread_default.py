"""Which default CPU thread count should ``interir restore`` use: one or all cores?

Usage (from the repository root, on a machine nothing else is running on):

    .venv/bin/python benchmarks/thread_default.py                # 1024 x 1024, default model
    .venv/bin/python benchmarks/thread_default.py --dry-run      # 64 x 64, one run: a check

For every load (``idle``: nothing else running; ``busy``: ``--busy`` processes spinning on the
CPU, as a training run would) and every thread count (1 and all cores unless ``--threads``), it
runs ``interir restore`` on one smooth synthetic image (``--size``, about 1 MP by default) in a
fresh process ``--runs`` times, and keeps the median of the image's own time (the number the
command prints at the end of the image's line) and of the whole command (start-up and model
loading included).

The recommended default is the thread count whose worst ratio to the best count of the same load
is smallest: the one that is never much worse. Results go to
``benchmarks/results/thread_default.{json,md}`` (``--out STEM``). The busy processes are this script's own
children and are stopped when it ends.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import results_stem, write_results
from PIL import Image

LOADS = ("idle", "busy")
#: The time ``interir restore`` prints at the end of a written image's line: ``(1.23 s)``.
IMAGE_TIME = re.compile(r"^written .*\(([0-9.]+) s\)$", re.MULTILINE)
SPIN = "while True:\n    pass\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--model", default="default", help="model given to interir restore")
    parser.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                        help="comma-separated thread counts (default: 1 and all cores)")
    parser.add_argument("--loads", default=",".join(LOADS), help="idle, busy or both")
    parser.add_argument("--busy", type=int, default=1,
                        help="spinning processes for the busy load (default 1: one core taken)")
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (median kept)")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem: writes STEM.json and STEM.md")
    parser.add_argument("--dry-run", action="store_true",
                        help="64 x 64 image, one run: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.size, args.runs = 64, 1
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    args.load_names = [name.strip() for name in args.loads.split(",") if name.strip()]
    unknown = set(args.load_names) - set(LOADS)
    if unknown or not args.load_names or not args.thread_counts:
        parser.error(f"--loads takes {', '.join(LOADS)}; --threads at least one count")
    return args


def write_image(path: Path, size: int) -> Path:
    """A smooth colour image with a little noise (restoration cost does not depend on content)."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    planes = [0.5 + 0.3 * np.sin(7 * xx + 3 * yy), 0.5 + 0.3 * np.cos(5 * yy + xx),
              0.4 + 0.3 * xx * yy]
    noise = np.random.default_rng(0).normal(0, 0.03, (size, size, 3))
    pixels = np.clip(np.stack(planes, -1) + noise, 0, 1)
    Image.fromarray((pixels * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def time_restore(image: Path, model: str, threads: int, work: Path) -> tuple[float, float]:
    """``(seconds of the image, seconds of the whole command)`` of one ``interir restore``."""
    command = [sys.executable, "-m", "interir.cli", "restore", str(image), "-o", str(work),
               "-m", model, "--threads", str(threads), "--overwrite", "--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    found = IMAGE_TIME.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"interir restore failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return float(found.group(1)), wall


def start_load(name: str, count: int) -> list[subprocess.Popen]:
    """The competing processes of a load (none when idle)."""
    if name == "idle":
        return []
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


Medians = dict[tuple[str, int], tuple[float, float]]


def measure(args: argparse.Namespace, image: Path, work: Path) -> Medians:
    """Median ``(image s, command s)`` per ``(load, threads)``."""
    medians = {}
    for load in args.load_names:
        spinning = start_load(load, args.busy)
        try:
            for threads in args.thread_counts:
                runs = [time_restore(image, args.model, threads, work) for _ in range(args.runs)]
                medians[(load, threads)] = (statistics.median(r[0] for r in runs),
                                            statistics.median(r[1] for r in runs))
                image_s = medians[(load, threads)][0]
                print(f"{load:5s} {threads:2d} threads: {image_s:.2f} s per image", flush=True)
        finally:
            stop_load(spinning)
    return medians


def worst_ratios(medians: Medians) -> dict[int, float]:
    """For each thread count, its largest ratio to the fastest count of the same load."""
    loads = sorted({load for load, _ in medians})
    best = {load: min(t[0] for (where, _), t in medians.items() if where == load) for load in loads}
    counts = sorted({threads for _, threads in medians})
    return {n: max(medians[(load, n)][0] / best[load] for load in loads) for n in counts}


def report(args: argparse.Namespace, medians: Medians, ratios: dict[int, float]) -> str:
    pick = min(ratios, key=lambda n: (ratios[n], n))
    lines = [
        "# Default thread count of `interir restore`", "",
        f"Model `{args.model}`, one {args.size} x {args.size} image, median of {args.runs} "
        f"run(s), {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"busy load = {args.busy} spinning process(es).", "",
        "| load | threads | s per image | s per command | x the best of its load |",
        "|---|---:|---:|---:|---:|",
    ]
    for (load, threads), (image_s, command_s) in sorted(medians.items()):
        best = min(t[0] for (where, _), t in medians.items() if where == load)
        lines.append(f"| {load} | {threads} | {image_s:.2f} | {command_s:.2f} "
                     f"| {image_s / best:.2f} |")
    lines += ["", "Worst ratio to the best over the loads: " + ", ".join(
        f"{n} thread(s) {r:.2f}x" for n, r in sorted(ratios.items())) + ".", "",
        f"Never much worse: **{pick} thread(s)**" + (
            " (dry run: a 64 px image measures start-up, not restoration; do not use this "
            "result)." if args.dry_run else "."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = write_image(Path(tmp) / "photo.png", args.size)
        medians = measure(args, image, Path(tmp) / "out")
    ratios = worst_ratios(medians)
    rows = [{"load": load, "threads": threads, "image_s": image_s, "command_s": command_s}
            for (load, threads), (image_s, command_s) in sorted(medians.items())]
    data = {"model": args.model, "size": args.size, "runs": args.runs, "busy": args.busy,
            "dry_run": args.dry_run, "rows": rows, "worst_ratio": ratios}
    paths = write_results(args.out, data, report(args, medians, ratios), __file__, argv)
    print(paths[-1].read_text())
    return paths[-1]


if __name__ == "__main__":
    main()
