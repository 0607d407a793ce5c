"""Which part of an unfolding network does the restoring? Per-stage PSNR over a test suite.

Usage (from the repository root):

    nice -n 5 .venv/bin/python benchmarks/stage_gains.py results/cbsd68-mdir \
        -m eb-interir-small -m eb-interir-small-xconv -m eb-deepsn-small -m default --per-combination 3

For every model (anything :func:`interir.load_model` accepts that has ``trace()``: the InterIR and
DeepSN-Net variants) and the first ``--per-combination`` images of every combination folder of a
suite written by ``interir synth`` (``COMBINATION/input``, ``COMBINATION/target``), it runs
:func:`interir.explain.explain_image` on the whole image and averages, over the images:

- the PSNR (dB, RGB, 8-bit) of the input, of the initial estimate (before any stage), of each
  stage's image estimate and, for networks with a full-resolution refinement ([ours], v1 default),
  of the refined output;
- each stage's share of the total gain (output minus input), and the refinement's.

This is the measurement behind "the unfolded stages carry most of the gain" (core v2 issue):
``explain_image`` keeps the refinement a separate entry, so it is never credited to a stage.
Results go to ``benchmarks/results/stage_gains.{json,md}`` (``--out STEM``), wherever it is run from.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import results_stem

from interir import load_model
from interir.data.paired import find_pairs
from interir.explain import explain_image
from interir.utils.io import read_image


def suite_pairs(suite: Path, per_combination: int) -> list[tuple[str, Path, Path]]:
    """``(combination, input, target)`` for the first ``per_combination`` pairs of each folder."""
    picked = []
    for folder in sorted(p for p in suite.iterdir() if (p / "input").is_dir()):
        for pair in find_pairs(folder)[:per_combination]:
            picked.append((folder.name, pair.input, pair.target))
    if not picked:
        raise SystemExit(f"{suite}: no COMBINATION/input folders; write a suite with `interir synth`")
    return picked


def measure(spec: str, pairs: list[tuple[str, Path, Path]]) -> dict:
    """Per-image trajectories of one model, and their means."""
    model = load_model(spec, "cpu").eval()
    rows = []
    for combination, inp, tgt in pairs:
        x, y = read_image(inp).image, read_image(tgt).image
        with torch.no_grad():
            exp = explain_image(model, x, y, conv_names=[])
        rows.append({
            "combination": combination, "image": inp.stem, "input": exp.input_psnr,
            "initial": exp.initial_psnr, "stages": exp.stage_psnr, "refined": exp.refined_psnr,
            "output": exp.output_psnr,
        })
        print(f"  {spec:24s} {combination:16s} {inp.stem:8s} {exp.input_psnr:6.2f} -> "
              f"{exp.output_psnr:6.2f} dB", file=sys.stderr)
    mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
    stages = [statistics.fmean(r["stages"][k] for r in rows) for k in range(len(rows[0]["stages"]))]
    refined = mean("refined") if rows[0]["refined"] is not None else None
    total = mean("output") - mean("input")
    share = lambda db: db / total if abs(total) > 1e-9 else math.nan  # noqa: E731 (fresh v2: no gain)
    steps = [stages[0] - mean("input")] + [b - a for a, b in zip(stages, stages[1:])]
    return {
        "model": spec, "images": len(rows), "input": mean("input"), "initial": mean("initial"),
        "stages": stages, "refined": refined, "output": mean("output"), "total_gain": total,
        "stage_shares": [share(s) for s in steps],
        "unfolding_share": share(stages[-1] - mean("input")),
        "refinement_share": None if refined is None else share(refined - stages[-1]),
        "rows": rows,
    }


def render(result: dict) -> str:
    """The Markdown report of :func:`main`'s result."""
    lines = [
        "# Where the gain is made: PSNR after each unfolding stage",
        "",
        f"`{result['command']}` on {result['machine']}, torch {result['torch']}: "
        f"{result['per_combination']} image(s) of each combination of `{result['suite']}` "
        f"({result['models'][0]['images']} whole images), PSNR in dB (RGB, 8-bit) averaged over "
        "them. Stage k's estimate is the image the network would output if it stopped after "
        "stage k (`interir explain` draws the same per image); the refinement, where a network "
        "has one ([ours], the v1 default), is its own column.",
        "",
    ]
    width = max(len(m["stages"]) for m in result["models"])
    head = ["model", "input", "initial"] + [f"stage {k + 1}" for k in range(width)]
    head += ["refined", "output", "gain", "unfolding share", "refinement share"]
    lines += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for m in result["models"]:
        cells = [f"`{m['model']}`", f"{m['input']:.2f}", f"{m['initial']:.2f}"]
        cells += [f"{s:.2f}" for s in m["stages"]] + [""] * (width - len(m["stages"]))
        cells += ["" if m["refined"] is None else f"{m['refined']:.2f}", f"{m['output']:.2f}",
                  f"{m['total_gain']:+.2f}", f"{100 * m['unfolding_share']:.0f} %",
                  "-" if m["refinement_share"] is None else f"{100 * m['refinement_share']:.0f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Share of the gain made by each stage (stage 1 counted from the input):", ""]
    for m in result["models"]:
        shares = ", ".join(f"{100 * s:.0f} %" for s in m["stage_shares"])
        lines.append(f"- `{m['model']}`: {shares}")
    lines += ["", f"Wall time {result['seconds']:.0f} s (per-image rows in the `.json`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="folder written by `interir synth`")
    parser.add_argument("-m", "--model", action="append", required=True, help="model spec, repeatable")
    parser.add_argument("--per-combination", type=int, default=3, help="images per combination")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = suite_pairs(args.suite, args.per_combination)
    start = time.perf_counter()
    models = [measure(spec, pairs) for spec in args.model]
    result = {
        "command": "python benchmarks/stage_gains.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} thread)",
        "torch": torch.__version__, "suite": str(args.suite), "per_combination": args.per_combination,
        "seconds": time.perf_counter() - start, "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
