"""Training throughput: images per second of the real training loop on this machine.

Runs ``interir train configs/cpu-<model>.yaml`` for a few steps (data loading from
``../shared/data/train``, on-the-fly degradation, forward, loss, backward, Adam, EMA) as

- one process with ``--threads`` CPU threads (each value given), and
- ``torchrun --nproc_per_node=2`` (gloo, one thread per process, same global batch),

and reads the images/s that the engine logs (``metrics.jsonl``), dropping the first log interval
as warm-up. Validation and periodic checkpoints are turned off; the patch size and batch are the
CPU config's.

Usage (from the repository root):
    .venv/bin/python benchmarks/train_throughput.py                       # both models, 20 steps
    .venv/bin/python benchmarks/train_throughput.py --models interir-tiny --steps 10

Writes benchmarks/results/train_throughput.{json,md} (``--out STEM`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import results_stem, write_results

from interir.utils.env import cpu_name

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"interir-small": "configs/cpu-small.yaml", "interir-tiny": "configs/cpu-tiny.yaml"}


def run_case(model: str, procs: int, threads: int, steps: int, log_every: int, out: Path,
             max_minutes: float) -> dict:
    name = f"{model}-p{procs}-t{threads}"
    overrides = [
        f"output.dir={out}", f"output.name={name}", "output.tensorboard=off",
        "data.val.kind=none", "train.ckpt_every=0", f"train.log_every={log_every}",
        f"train.threads={threads}", f"train.max_minutes={max_minutes}",
    ]
    cli = ["-m", "interir.cli", "train", CONFIGS[model], *overrides, "--max-steps", str(steps), "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if procs == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cli]
    load_before = os.getloadavg()
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if r["kind"] == "train"]
    measured = rates[1:] if len(rates) > 1 else rates
    summary = json.loads((out / name / "summary.json").read_text())
    return {
        "model": model,
        "processes": procs,
        "threads_per_process": threads,
        "patch_size": None,
        "steps": summary["step"],
        "stop_reason": summary["reason"],
        "images_per_s_mean": statistics.fmean(measured),
        "images_per_s_median": statistics.median(measured),
        "images_per_s_intervals": rates,
        "wall_s": round(wall, 1),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["python" if c == sys.executable else c for c in cmd]).replace(str(out), "OUT"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["interir-tiny", "interir-small"], choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=20, help="steps per case (first log interval = warm-up)")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="threads of the 1-process runs")
    ap.add_argument("--procs", type=int, default=2, help="processes of the torchrun case (0: skip)")
    ap.add_argument("--max-minutes", type=float, default=4.0, help="time cap per case")
    ap.add_argument("--out", type=Path, default=results_stem(__file__),
                    help="results stem: writes STEM.json and STEM.md")
    args = ap.parse_args()

    import torch

    sys.path.insert(0, str(REPO / "src"))
    from interir.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="train_throughput-"))
    results = []
    try:
        for model in args.models:
            cfg = load_config(REPO / CONFIGS[model])
            cases = [(1, t) for t in args.threads] + ([(args.procs, 1)] if args.procs > 1 else [])
            for procs, threads in cases:
                res = run_case(model, procs, threads, args.steps, args.log_every, tmp, args.max_minutes)
                res["patch_size"] = cfg.data.patch_size
                res["batch_size"] = cfg.train.batch_size
                results.append(res)
                print(f"{model:14s} procs {procs} threads {threads}: {res['images_per_s_median']:.2f} img/s "
                      f"(median of {len(res['images_per_s_intervals']) - 1} intervals, load {res['load_avg_after'][0]})",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    machine = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    payload = {"steps": args.steps, "log_every": args.log_every, "results": results}

    lines = [
        "# Training throughput",
        "",
        "The real training loop "
        f"(`interir train configs/cpu-*.yaml`: JPEG decoding, random patches, on-the-fly degradation, "
        f"forward, L1+FFT loss, backward, Adam, EMA) on {machine['cpu']} ({machine['cpu_count']} cores), "
        f"torch {machine['torch']}. Images/s of the global batch, median over log intervals of "
        f"{args.log_every} steps after the first (warm-up); validation and checkpoints off.",
        "",
        "| model | patch | batch | processes x threads | images/s (median) | mean | steps | load avg (1 min) before / after |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['patch_size']} | {r['batch_size']} | {r['processes']} x {r['threads_per_process']} | "
            f"{r['images_per_s_median']:.2f} | {r['images_per_s_mean']:.2f} | {r['steps']} | "
            f"{r['load_avg_before'][0]} / {r['load_avg_after'][0]} |"
        )
    lines += [
        "",
        "A load average above the core count means other processes shared the CPU during the run, "
        "which lowers the numbers (most of all for 2 threads in one process: OpenMP threads that "
        "wait for each other suffer first).",
        "",
        "Commands:",
        "",
        *[f"- `{r['command']}`" for r in results],
        "",
    ]
    write_results(args.out, payload, "\n".join(lines), __file__)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
