"""Training throughput with and without the data prefetch thread (issue 25, ``data.prefetch``).

    python benchmarks/train_prefetch.py                      # default models, 3 rounds of 60 steps
    python benchmarks/train_prefetch.py --models nafnet-small --rounds 2 --steps 40

Each measurement is a fresh ``interir train configs/cpu-small.yaml`` process (64-px patches,
batch 8, one thread, no validation, no checkpoints) run for ``--steps`` steps with
``data.prefetch=false`` or ``true``, alternated within each round so that a change in the
machine's load hits both; the figure is the trainer's own images/s (``summary.json``, its first
logging interval left out as warm-up). The prefetch thread can only help when a core is free
for it: run this on an otherwise idle machine of 2 or more cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BENCHMARKS, environment, results_stem, write_results

ROOT = BENCHMARKS.parent
RECIPE = ["data.val.kind=none", "train.val_every=0", "train.ckpt_every=0", "train.log_every=10",
          "train.threads=1", "train.ema_decay=null", "output.tensorboard=off"]


def images_per_s(model: str, prefetch: bool, steps: int, workdir: Path) -> float:
    """The trainer's images/s over ``steps`` steps of ``model`` (a fresh process)."""
    name = f"{model}-{'on' if prefetch else 'off'}"
    args = [sys.executable, "-m", "interir.cli", "train", "configs/cpu-small.yaml", f"model.name={model}",
            f"train.iterations={steps}", f"data.prefetch={str(prefetch).lower()}",
            f"output.dir={workdir}", f"output.name={name}", "--overwrite", *RECIPE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True)
    return float(json.loads((workdir / name / "summary.json").read_text())["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["interir-small-v3", "nafnet-small"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=results_stem(__file__))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            off, on = [], []
            for r in range(args.rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for prefetch in order:
                    (on if prefetch else off).append(images_per_s(model, prefetch, args.steps, Path(tmp)))
                print(f"{model} round {r}: off {off[-1]:.2f}  on {on[-1]:.2f} img/s", flush=True)
            ratios = [b / a for a, b in zip(off, on)]
            rows.append({"model": model, "off": off, "on": on, "ratio_median": statistics.median(ratios)})
    env = environment()
    lines = ["# Training throughput with the data prefetch thread", "",
             f"CPU: {env['cpu']}, capability {env['cpu_capability']}, "
             f"{os.cpu_count()} cores, load before the run {os.getloadavg()[0]:.2f}; "
             f"64-px patches, batch 8, one training thread, {args.steps} steps a run, "
             f"{args.rounds} alternated rounds.", "",
             "| model | img/s prefetch off (median) | img/s prefetch on (median) | on / off (median of rounds) |",
             "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {statistics.median(row['off']):.2f} | "
                     f"{statistics.median(row['on']):.2f} | {row['ratio_median']:.2f}x |")
    write_results(args.out, {"steps": args.steps, "rounds": args.rounds, "rows": rows}, "\n".join(lines), __file__)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
