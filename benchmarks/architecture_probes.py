"""Architecture probes for InterIR core v2: short runs of the cpu-small recipe, one change at a time.

Each probe is ``interir train configs/cpu-small.yaml`` with ``train.iterations=1000`` (the whole
cosine schedule in 1000 steps), the validation widened to all 56 held-out pairs (8 BSDS images x 7
combinations, 128-px centre crops) and the probe's model overrides. The score is the EMA weights'
validation PSNR at step 1000, read from the run's ``metrics.jsonl``.

    python benchmarks/architecture_probes.py --list
    python benchmarks/architecture_probes.py v1 v2-core          # run these probes, one after another
    python benchmarks/architecture_probes.py --seed 1 v2-core     # a second seed
    python benchmarks/architecture_probes.py --report             # table -> benchmarks/results/

Results accumulate in ``benchmarks/results/architecture_probes.json`` (one entry per probe and
seed, under ``"probes"``; ``--out STEM`` elsewhere); ``--report`` writes the table that the
write-up ``architecture_probes.md`` quotes to ``architecture_probes_report.md``, both through
benchmarks/_common.py. Run folders go to ``runs/probes/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import results_stem, write_results

ROOT = Path(__file__).resolve().parents[1]
RECIPE = [
    "train.iterations=1000", "train.val_every=1000", "train.ckpt_every=250", "data.val.limit=56",
    "output.tensorboard=off", "train.threads=1",
]
V2_CORE = ["model.overrides.stage_update=add", "model.overrides.output_skip=init"]
# v1 spelled out, so that the probes mean the same after the registered variants moved to v2.
V1 = [
    "model.overrides.stage_update=subtract", "model.overrides.output_skip=input", "model.overrides.factor_init=gram",
    "model.overrides.width=32", "model.overrides.dmum_expansion=2",
]

V2_BEST = V2_CORE + ["model.overrides.down_up=learned", "optim.gain_lr_scale=10"]
V3_ALL = [
    "model.overrides.detail_skip=true", "model.overrides.data_term=residual", "model.overrides.operator=lowrank",
    "model.overrides.operator_rank=2", "model.overrides.coarse_prior=true", "model.overrides.attention_gain=learned",
]
# What the seed-0 probes kept (interir-small-v3 in interir.models.factory).
V3_CHOSEN = [
    "model.overrides.detail_skip=true", "model.overrides.data_term=residual", "model.overrides.operator=lowrank",
    "model.overrides.operator_rank=1",
]
# name -> (model, overrides, what it tests)
PROBES: dict[str, tuple[str, list[str], str]] = {
    "v1": ("interir-small", V1, "interir-small as landed (v1: subtraction, Up(I^N) + D)"),
    "add": ("interir-small", ["model.overrides.stage_update=add"], "gated additive updates only"),
    "skip-init": ("interir-small", ["model.overrides.output_skip=init"], "output Up(I^N - I^0) + D only"),
    "v2-core": ("interir-small", V2_CORE, "additive gated updates + output from I^0 (identity at init)"),
    "lossless": ("interir-small", ["model.overrides.width=48"], "C = 48 = 3 s^2 (lossless Down) only"),
    "centred": ("interir-small", ["model.overrides.factor_init=centred"], "centred Gram factors only"),
    "dmum-x1": ("interir-small", ["model.overrides.dmum_expansion=1"], "DMUM blocks at expansion 1 only"),
    "v2-core+lossless": ("interir-small", V2_CORE + ["model.overrides.width=48"], "v2-core and C = 48"),
    "v2-core+centred": ("interir-small", V2_CORE + ["model.overrides.factor_init=centred"], "v2-core and centred"),
    "v2-all": (
        "interir-small",
        V2_CORE + ["model.overrides.width=48", "model.overrides.factor_init=centred"],
        "v2-core, C = 48 and centred factors",
    ),
    "v2-all+dmum-x1": (
        "interir-small",
        V2_CORE + ["model.overrides.width=48", "model.overrides.factor_init=centred", "model.overrides.dmum_expansion=1"],
        "v2-all with DMUM blocks at expansion 1",
    ),
    "v2-core+gain-lr-x10": (
        "interir-small", V2_CORE + ["optim.gain_lr_scale=10"],
        "v2-core with a 10x learning rate for the zero-initialised gains",
    ),
    "v2-lossless+gain-lr-x10": (
        "interir-small", V2_CORE + ["model.overrides.width=48", "optim.gain_lr_scale=10"],
        "v2-core+lossless with a 10x learning rate for the gains (the rematch model's recipe at 1000 steps)",
    ),
    "v2-learned-down-up": (
        "interir-small", V2_CORE + ["model.overrides.down_up=learned"],
        "v2-core with a learned full-resolution Down/Up (one EPBlock of width 16 each side)",
    ),
    "v2-learned-down-up+gain-lr-x10": (
        "interir-small", V2_CORE + ["model.overrides.down_up=learned", "optim.gain_lr_scale=10"],
        "v2-learned-down-up with the 10x gain learning rate",
    ),
    # Core v3 (issue 25): each option on top of the registered v2 interir-small (learned Down/Up)
    # with the 10x gain learning rate, the best v2 probe above.
    **{
        f"v3-{name}": ("interir-small", V2_BEST + extra, what)
        for name, extra, what in [
            ("detail-skip", ["model.overrides.detail_skip=true"], "[ours] Up's full-res block also sees Down's full-res features"),
            ("residual", ["model.overrides.data_term=residual"], "[paper] data term P^T(P I - D) with one non-negative weight"),
            ("lowrank-r1", ["model.overrides.operator=lowrank", "model.overrides.operator_rank=1"], "[ours] rank-1 separable P from pooled profiles, no Gram/DMUM blocks"),
            ("lowrank-r2", ["model.overrides.operator=lowrank", "model.overrides.operator_rank=2"], "[ours] rank-2 separable P from pooled profiles"),
            ("coarse", ["model.overrides.coarse_prior=true"], "[ours] a 1/8-scale branch in the prior term"),
            ("gain", ["model.overrides.attention_gain=learned"], "[ours] learned per-channel gain on the attention logits"),
            ("all", V3_ALL, "detail-skip + residual + lowrank-r2 + coarse + gain"),
            ("chosen", V3_CHOSEN, "detail-skip + residual + lowrank-r1: the registered interir-small-v3"),
        ]
    },
    "nafnet-small": ("nafnet-small", [], "the NAFNet baseline at the same recipe (reference)"),
}


def command(name: str, seed: int) -> list[str]:
    model, overrides, _ = PROBES[name]
    if model == "interir-small":
        overrides = V1 + [o for o in overrides if o not in V1]  # later overrides win
    return [
        "interir", "train", "configs/cpu-small.yaml", f"model.name={model}", *overrides, *RECIPE,
        f"train.seed={seed}", "output.dir=runs/probes", f"output.name={name}-s{seed}",
    ]


def parameter_count(name: str) -> int:
    import interir

    model, overrides, _ = PROBES[name]
    kwargs = {}
    for item in (V1 + overrides if model == "interir-small" else overrides):
        if not item.startswith("model.overrides."):
            continue
        key, value = item.removeprefix("model.overrides.").split("=", 1)
        kwargs[key] = int(value) if value.isdigit() else {"true": True, "false": False}.get(value, value)
    return sum(p.numel() for p in interir.create_model(model, **kwargs).parameters())


def final_validation(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in rows if r.get("kind") == "val"]
    if not vals:
        raise RuntimeError(f"no validation row in {run_dir / 'metrics.jsonl'}")
    return vals[-1]


def run_probe(name: str, seed: int) -> dict:
    cmd = command(name, seed)
    run_dir = ROOT / "runs" / "probes" / f"{name}-s{seed}"
    resume = ["--resume"] if (run_dir / "checkpoints" / "last").exists() else ["--overwrite"]
    start = time.time()
    exe = [sys.executable, "-m", "interir.cli", *cmd[1:], *resume]
    subprocess.run(exe, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    val = final_validation(run_dir)
    params = parameter_count(name)
    return {
        "probe": name, "seed": seed, "model": PROBES[name][0], "what": PROBES[name][2],
        "psnr": val["psnr"], "ssim": val["ssim"], "val_images": val.get("val_images"),
        "parameters": params, "wall_s": round(time.time() - start, 1), "command": shlex.join(cmd),
    }


def load(stem: Path) -> list[dict]:
    """The stored probe entries (``{"probes": [...]}``, or the bare list files before it held the
    command and environment)."""
    path = stem.with_suffix(".json")
    data = json.loads(path.read_text()) if path.exists() else []
    return data["probes"] if isinstance(data, dict) else data


def save(entry: dict, stem: Path) -> None:
    results = load(stem)
    results = [r for r in results if (r["probe"], r["seed"]) != (entry["probe"], entry["seed"])] + [entry]
    write_results(stem, {"probes": results}, None, __file__)


def training_minutes(name: str, seed: int) -> float | None:
    """Training time of a probe's run (its own clock, all sessions), from ``metrics.jsonl``."""
    path = ROOT / "runs" / "probes" / f"{name}-s{seed}" / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elapsed = [r["elapsed_s"] for r in rows if r.get("kind") == "train" and "elapsed_s" in r]
    return elapsed[-1] / 60 if elapsed else None


def report(stem: Path) -> str:
    results = load(stem)
    for r in results:
        minutes = training_minutes(r["probe"], r["seed"])
        if minutes is not None:
            r["train_min"] = round(minutes, 1)
    base = {r["seed"]: r["psnr"] for r in results if r["probe"] == "v1"}
    lines = [
        "# Architecture probes: every stored run", "",
        "| probe | what it changes | seed | val PSNR (dB) | vs v1 same seed | SSIM | params | training time (shared CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(PROBES)}
    for r in sorted(results, key=lambda r: (order.get(r["probe"], 99), r["seed"])):
        delta = f"{r['psnr'] - base[r['seed']]:+.2f}" if r["seed"] in base else ""
        params = f"{r['parameters'] / 1e6:.3f} M" if r.get("parameters") else ""
        lines.append(
            f"| {r['probe']} | {r['what']} | {r['seed']} | {r['psnr']:.2f} | {delta} | {r['ssim']:.4f} | "
            f"{params} | {r.get('train_min', r['wall_s'] / 60):.1f} min |"
        )
    lines += ["", "Commands (run from the repository root):", ""]
    lines += [f"- `{r['probe']}` seed {r['seed']}: `{shlex.join(command(r['probe'], r['seed']))}`" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="*", help="probe names (see --list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="write the table of every stored probe to <stem>_report.md")
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json is added; the report is <stem>_report.md)")
    args = parser.parse_args()
    stem = Path(args.out)
    if args.list:
        for name, (model, overrides, what) in PROBES.items():
            print(f"{name:18s} {what}")
        return
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown:
        parser.error(f"unknown probes {unknown}; valid: {', '.join(PROBES)}")
    for name in args.probes:
        save(run_probe(name, args.seed), stem)
        print(report(stem).splitlines()[-1])
    if args.report:
        text = report(stem)
        write_results(stem.with_name(stem.name + "_report"), None, text, __file__)
        print(text)
    elif args.probes:
        print(report(stem))


if __name__ == "__main__":
    main()
