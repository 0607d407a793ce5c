"""Which inference settings should ``interir restore`` use by default?

Usage (from the repository root):

    nice -n 5 .venv/bin/python benchmarks/inference_settings.py          # see below for the time
    .venv/bin/python benchmarks/inference_settings.py --dry-run          # 128 px, 1 run: a check
    .venv/bin/python benchmarks/inference_settings.py \
        --render benchmarks/results/inference_settings.json             # rewrite the .md only

The timed runs at one thread use about a minute of CPU time, so with the 2-thread runs the script
should take a few minutes on an idle 2-core machine (not measured there); on a machine busy with
other work the wall-clock time grows with the share of a core the script gets (57 minutes when it
got about a tenth of one).
``--render`` rewrites the ``.md`` from a saved ``.json`` without measuring.

For the shipped default model (``interir.load_pretrained("default")``) it times
:func:`interir.inference.restore_tensor` (automatic tiling: a 512 x 512 photo runs whole, a
1024 x 768 one in 6 tiles of about 420 x 390 px) under four settings:

- ``fp32``: float32, contiguous memory (the reference);
- ``channels_last``: the model and its input in ``torch.channels_last`` memory format;
- ``bf16``: ``torch.autocast`` to bfloat16 (the output is cast back to float32);
- ``channels_last+bf16``: both.

Each is timed with every ``--threads`` count. The settings are interleaved (fp32, channels_last,
bf16, both, fp32, ...) and each time is the median of the repeats, so a machine that is busy with
something else slows every setting alike and the ratios stay fair. A ``pool_window`` row
(``--pool-window``, fp32, timed once at the first thread count) shows what the windowed channel
attention does to the same photos; it is a quality switch, not a speed one.

The photos: [ours] mosaics of 256-px cells cut from the repository's CC0 test photos
(``tests/data``: astronaut, chelsea, coffee, camera; chelsea and coffee resized from 300 x 200 to
384 x 256 with Lanczos first, camera grey in all three channels; every other pass mirrored).
Each is degraded with ``haze+rain+noise`` by :class:`interir.degradations.DegradationPipeline`,
seeded and quantised to 8 bits as ``interir synth`` does. For every setting the script reports
the PSNR of its output against the fp32 output (float, not quantised) and against the clean photo
(8-bit RGB, as ``interir eval`` scores).

The rule ([ours], stated before measuring): a setting other than fp32 is eligible as the default
only if it is at least 5 % faster than fp32 both in wall-clock time (geometric mean of the ratios
of the medians over every size and thread count) and in the process's CPU time at the first
thread count (geometric mean over the sizes; waiting for a core, which dominates on a busy
machine, does not inflate it), 5 % being a margin against run-to-run noise, and its PSNR against
the clean photo is within 0.05 dB of fp32's on every size. Of the eligible ones the fastest is
recommended; fp32 if none is. Results go to ``benchmarks/results/inference_settings.{json,md}``
(``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from _common import environment, results_stem
from PIL import Image

import interir
from interir.data.synthetic import quantize8
from interir.degradations import DegradationPipeline
from interir.inference import restore_tensor
from interir.metrics.image import psnr

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data"
CELL = 256
#: name -> (channels_last, precision)
SETTINGS = {
    "fp32": (False, "fp32"),
    "channels_last": (True, "fp32"),
    "bf16": (False, "bf16"),
    "channels_last+bf16": (True, "bf16"),
}
COMBINATION = "haze+rain+noise"
#: [ours] Smallest geometric-mean speed-up that counts as faster, and the PSNR tolerance.
MIN_SPEEDUP = 1.05
MAX_PSNR_DROP = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="shipped name or checkpoint path")
    parser.add_argument("--sizes", default="512x512:3,1024x768:1",
                        help="WIDTHxHEIGHT[:repeats], comma-separated (default 512x512 three "
                             "times, 1024x768 once, to stay near 10 minutes)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--pool-window", type=int, default=192,
                        help="window of the pool_window row (0: leave the row out)")
    parser.add_argument("--seed", type=int, default=2025, help="seed of the degradations")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="output path without extension (.json and .md are written)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="rewrite the Markdown next to a saved JSON result; measures nothing")
    parser.add_argument("--dry-run", action="store_true",
                        help="128 x 128 and 192 x 128 images (tile 128), one run: checks the "
                             "script, measures nothing; writes nothing unless --out is given")
    args = parser.parse_args(argv)
    args.tile = None
    if args.dry_run:
        args.sizes, args.tile = "128x128:1,192x128:1", 128
        if "--out" not in (argv if argv is not None else sys.argv[1:]):
            args.out = None
    args.size_list = []
    for item in args.sizes.split(","):
        size, _, repeats = item.strip().partition(":")
        width, height = (int(v) for v in size.lower().split("x"))
        args.size_list.append((width, height, int(repeats or 3)))
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    return args


# ----------------------------------------------------------------------------------------------
# photos


def _cells() -> list[np.ndarray]:
    """256 x 256 RGB uint8 cells from the CC0 test photos, in a fixed order."""
    def load(name: str) -> Image.Image:
        return Image.open(PHOTOS / name).convert("RGB")

    cells = [np.asarray(load("astronaut.png"))]
    for name in ("chelsea.png", "coffee.png"):
        wide = np.asarray(load(name).resize((384, 256), Image.LANCZOS))
        cells += [wide[:, :CELL], wide[:, -CELL:]]
    cells.append(np.asarray(load("camera.png")))
    order = [0, 1, 3, 5, 2, 4]  # astronaut, chelsea L, coffee L, camera, chelsea R, coffee R
    return [cells[i] for i in order]


def photo(width: int, height: int) -> torch.Tensor:
    """A ``(3, height, width)`` float32 photo in [0, 1]: a mosaic of the test photos' cells."""
    cells = _cells()
    rows, cols = -(-height // CELL), -(-width // CELL)
    grid = np.zeros((rows * CELL, cols * CELL, 3), np.uint8)
    for k in range(rows * cols):
        cell = cells[k % len(cells)]
        if (k // len(cells)) % 2:
            cell = cell[:, ::-1]
        r, c = divmod(k, cols)
        grid[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = cell
    return torch.from_numpy(grid[:height, :width].copy()).permute(2, 0, 1).float() / 255.0


def degrade(clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
    """``(degraded (3, H, W) on the 8-bit grid, its parameters)``, as ``interir synth``."""
    pipe = DegradationPipeline((COMBINATION,))
    generator = torch.Generator().manual_seed(seed)
    params = pipe.sample(1, generator, combination=COMBINATION)
    degraded = quantize8(pipe.apply(quantize8(clean[None]), params))[0]
    return degraded, params.to_records()[0]


# ----------------------------------------------------------------------------------------------
# measuring


def _time(model, image, channels_last, precision, tile, pool_window=None):
    """``(wall seconds, CPU seconds of this process, output)`` of one ``restore_tensor``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = restore_tensor(model, image, tile=tile, channels_last=channels_last,
                         precision=precision, pool_window=pool_window)
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def measure(args: argparse.Namespace) -> dict:
    """Run every setting, size and thread count; return the results as a JSON-able dict."""
    model = interir.load_pretrained(args.model)
    photos = {}
    for index, (width, height, repeats) in enumerate(args.size_list):
        clean = photo(width, height)
        degraded, record = degrade(clean, args.seed + index)
        photos[f"{width}x{height}"] = dict(clean=clean, degraded=degraded, repeats=repeats,
                                           params=record)
    # Warm-up: load every setting's kernels once on a small image (not timed).
    for threads in args.thread_counts:
        torch.set_num_threads(threads)
        for channels_last, precision in SETTINGS.values():
            _time(model, torch.rand(3, 128, 128), channels_last, precision, args.tile)

    times = {t: {s: {name: [] for name in SETTINGS} for s in photos} for t in args.thread_counts}
    cpu_times = {s: {name: [] for name in SETTINGS} for s in photos}  # first thread count
    outputs: dict[str, dict[str, torch.Tensor]] = {s: {} for s in photos}
    began = time.perf_counter()
    for round_ in range(max(p["repeats"] for p in photos.values())):
        for threads in args.thread_counts:
            torch.set_num_threads(threads)
            for size, item in photos.items():
                if round_ >= item["repeats"]:
                    continue
                for name, (channels_last, precision) in SETTINGS.items():
                    seconds, cpu, out = _time(model, item["degraded"], channels_last,
                                              precision, args.tile)
                    times[threads][size][name].append(seconds)
                    if threads == args.thread_counts[0]:
                        cpu_times[size][name].append(cpu)
                        outputs[size].setdefault(name, out)
                    print(f"[{time.perf_counter() - began:6.0f} s] round {round_ + 1}, "
                          f"{threads} thread(s), {size}, {name}: {seconds:.2f} s "
                          f"(CPU {cpu:.2f} s)", flush=True)
    window_row = f"pool_window={args.pool_window}"
    window_times = {}
    if args.pool_window:
        torch.set_num_threads(args.thread_counts[0])
        for size, item in photos.items():
            seconds, cpu, out = _time(model, item["degraded"], False, "fp32", args.tile,
                                      args.pool_window)
            window_times[size] = (seconds, cpu)
            outputs[size][window_row] = out
            print(f"[{time.perf_counter() - began:6.0f} s] {window_row}, {size}: {seconds:.2f} s",
                  flush=True)

    rows = {}
    for size, item in photos.items():
        clean, reference = item["clean"], outputs[size]["fp32"]
        input_psnr = float(psnr(item["degraded"], clean))
        per = {}
        for name, out in outputs[size].items():
            vs_fp32 = float(psnr(out, reference, quantize=False))
            per[name] = {
                "psnr_vs_fp32_output": vs_fp32 if math.isfinite(vs_fp32) else None,
                "max_abs_diff_vs_fp32": float((out - reference).abs().max()),
                "psnr_vs_clean": float(psnr(out, clean)),
                "median_s": {}, "runs_s": {},
            }
            cpu_runs = cpu_times[size].get(name) or [window_times[size][1]]
            per[name]["cpu_runs_s"] = cpu_runs
            per[name]["cpu_median_s"] = statistics.median(cpu_runs)
            for threads in args.thread_counts:
                runs = times[threads][size].get(name)
                if runs:
                    per[name]["runs_s"][str(threads)] = runs
                    per[name]["median_s"][str(threads)] = statistics.median(runs)
            if name == window_row:
                per[name]["runs_s"][str(args.thread_counts[0])] = [window_times[size][0]]
                per[name]["median_s"][str(args.thread_counts[0])] = window_times[size][0]
        for name, entry in per.items():
            entry["psnr_delta_vs_fp32"] = entry["psnr_vs_clean"] - per["fp32"]["psnr_vs_clean"]
            entry["speedup"] = {
                t: per["fp32"]["median_s"][t] / s for t, s in entry["median_s"].items()
            }
            entry["cpu_speedup"] = per["fp32"]["cpu_median_s"] / entry["cpu_median_s"]
        rows[size] = {"input_psnr_vs_clean": input_psnr, "degradation": item["params"],
                      "repeats": item["repeats"], "settings": per}
    return {"rows": rows, "measure_seconds": time.perf_counter() - began}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def choose(rows: dict) -> dict:
    """Apply the rule of the module docstring; returns per-setting verdicts and the choice."""
    verdicts = {}
    for name in SETTINGS:
        if name == "fp32":
            continue
        ratios = [r["settings"][name]["speedup"][t] for r in rows.values()
                  for t in r["settings"][name]["speedup"]]
        speedup = _geomean(ratios)
        cpu_speedup = _geomean([r["settings"][name]["cpu_speedup"] for r in rows.values()])
        worst = min(r["settings"][name]["psnr_delta_vs_fp32"] for r in rows.values())
        faster = speedup >= MIN_SPEEDUP and cpu_speedup >= MIN_SPEEDUP
        holds = worst >= -MAX_PSNR_DROP
        verdicts[name] = {"geomean_speedup": speedup, "geomean_cpu_speedup": cpu_speedup,
                          "worst_psnr_delta_db": worst,
                          "faster": faster, "holds_psnr": holds, "eligible": faster and holds}
    eligible = [n for n, v in verdicts.items() if v["eligible"]]
    best = max(eligible, key=lambda n: verdicts[n]["geomean_speedup"]) if eligible else "fp32"
    channels_last, precision = SETTINGS[best]
    return {"verdicts": verdicts, "recommended": best,
            "defaults": {"channels_last": channels_last, "precision": precision}}


# ----------------------------------------------------------------------------------------------
# report


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, text=True, capture_output=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _environment() -> dict:
    commit = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks")
    if commit and changed:
        commit += " (with uncommitted changes)"
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _machine_note(env: dict) -> str:
    """What the load average says about the machine the numbers were measured on."""
    loads = f"{', '.join(f'{v:.1f}' for v in env['load_average_start'])} at the start and " \
            f"{', '.join(f'{v:.1f}' for v in env['load_average'])} at the end"
    if max(env["load_average_start"][0], env["load_average"][0]) < 0.5:
        return f"The machine was idle (load average {loads})."
    return (f"**The machine was busy** with other work (load average {loads}). Absolute times "
            "are therefore pessimistic (2 threads especially, whose threads wait on each other "
            "when a core is taken) and the ratios between settings are what counts: the "
            "settings were interleaved and each time is the median of the repeats, so the load "
            "slows them alike. Re-measure on an idle machine with the same command.")


def _wall_per_cpu(result: dict) -> float:
    """Median ratio of wall to CPU time of the timed runs at the first thread count."""
    first = str(result["threads"][0])
    ratios = [wall / cpu for row in result["rows"].values()
              for entry in row["settings"].values()
              for wall, cpu in zip(entry["runs_s"].get(first, []), entry["cpu_runs_s"]) if cpu > 0]
    return statistics.median(ratios)


def markdown(result: dict) -> str:
    env, rows, choice = result["environment"], result["rows"], result["choice"]
    threads = result["threads"]
    lines = [
        "# Inference settings of the default model (channels-last, bf16)",
        "",
        f"Measured {env['date']} at commit {env['commit']} on {env['cpu']} ({env['cores']} "
        f"cores), torch {env['torch']}, with:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        result.get("machine_note") or _machine_note(env),
        "",
        f"The measurements took {result['measure_seconds'] / 60:.0f} minutes wall-clock. At "
        f"{threads[0]} thread{'s' if threads[0] != 1 else ''} an image's wall time was "
        f"{_wall_per_cpu(result):.1f} x its CPU time: the script ran on a core about "
        f"{100 / _wall_per_cpu(result):.0f} % of the time.",
        "",
        "Photos: mosaics of 256-px cells of the CC0 test photos in `tests/data`, degraded with "
        f"`{COMBINATION}` by `DegradationPipeline` (seeded, 8-bit, as `interir synth`). Times "
        "are wall-clock seconds per image of `restore_tensor` (automatic tiling: 512 x 512 runs "
        "whole, 1024 x 768 in 6 tiles); the CPU column is the CPU time the process used at the "
        "first thread count, which waiting for a core does not inflate (a cross-check: the rule "
        "uses the wall times). PSNR against the fp32 output is on float values; against the "
        "clean photo on 8-bit RGB, as `interir eval`.",
        "",
    ]
    for size, row in rows.items():
        header = " | ".join(f"{t} thread{'s' if t != 1 else ''}: s (x fp32)" for t in threads)
        header += f" | CPU s, {threads[0]} thread{'s' if threads[0] != 1 else ''} (x fp32)"
        lines += [
            f"## {size} (median of {row['repeats']}; input {row['input_psnr_vs_clean']:.2f} dB)",
            "",
            f"| setting | {header} | PSNR vs fp32 output | max abs diff | PSNR vs clean (Δ) |",
            "|---|" + "---:|" * (len(threads) + 4),
        ]
        for name, entry in row["settings"].items():
            cells = []
            for t in threads:
                median = entry["median_s"].get(str(t))
                cells.append("—" if median is None else
                             f"{median:.2f} ({entry['speedup'][str(t)]:.2f}x)")
            cells.append(f"{entry['cpu_median_s']:.2f} ({entry['cpu_speedup']:.2f}x)")
            vs_fp32 = entry["psnr_vs_fp32_output"]
            lines.append(
                f"| {name} | {' | '.join(cells)} | "
                f"{'identical' if vs_fp32 is None else f'{vs_fp32:.1f} dB'} | "
                f"{entry['max_abs_diff_vs_fp32']:.1e} | {entry['psnr_vs_clean']:.3f} dB "
                f"({entry['psnr_delta_vs_fp32']:+.3f}) |"
            )
        lines.append("")
    lines += [
        "## Choice",
        "",
        f"Rule ([ours], fixed before measuring): a setting is eligible as the default only if it "
        f"is at least {int(round((MIN_SPEEDUP - 1) * 100))} % faster than fp32 both in wall time "
        "(geometric mean of the ratios above, every size and thread count) and in CPU time "
        f"(geometric mean over the sizes), and its PSNR against the clean photo is within "
        f"{MAX_PSNR_DROP} dB of fp32's on every size; the fastest eligible one (wall time) is the "
        "default.",
        "",
        "| setting | speed-up, wall | speed-up, CPU | worst PSNR Δ vs fp32 (clean photo) | faster "
        "| holds PSNR |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, v in choice["verdicts"].items():
        lines.append(f"| {name} | {v['geomean_speedup']:.2f}x | {v['geomean_cpu_speedup']:.2f}x | "
                     f"{v['worst_psnr_delta_db']:+.3f} "
                     f"dB | {'yes' if v['faster'] else 'no'} | "
                     f"{'yes' if v['holds_psnr'] else 'no'} |")
    d = choice["defaults"]
    lines += [
        "",
        f"Recommended: **{choice['recommended']}** (`channels_last={d['channels_last']}`, "
        f"`precision=\"{d['precision']}\"`).",
        "",
    ]
    extra = sorted({n for row in rows.values() for n in row["settings"] if n not in SETTINGS})
    for name in extra:
        parts = [f"{row['settings'][name]['psnr_delta_vs_fp32']:+.3f} dB and "
                 f"{row['settings'][name]['cpu_speedup']:.2f}x the CPU time of fp32 at {size}"
                 for size, row in rows.items() if name in row["settings"]]
        lines += [f"`{name}` is not a candidate (it changes what the network computes, not how "
                  f"fast): {'; '.join(parts)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        text = markdown(json.loads(args.render.read_text()))
        args.render.with_suffix(".md").write_text(text)
        print(f"wrote {args.render.with_suffix('.md')}")
        return 0
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    measured = measure(args)
    result = {
        "command": "nice -n 5 .venv/bin/python benchmarks/inference_settings.py"
                   + (" " + shlex.join(argv if argv is not None else sys.argv[1:])
                      if (argv if argv is not None else sys.argv[1:]) else ""),
        "model": args.model, "threads": args.thread_counts, "settings": list(SETTINGS),
        "combination": COMBINATION, "seed": args.seed, "tile": args.tile,
        "rule": {"min_speedup": MIN_SPEEDUP, "max_psnr_drop_db": MAX_PSNR_DROP},
        **measured,
    }
    result["choice"] = choose(result["rows"])
    result["environment"] = {**environment(), **_environment(), "load_average_start": load_start}
    text = markdown(result)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
