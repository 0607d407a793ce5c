"""Does a validation set rank the shipped models the way the benchmarks do? (docs/recipes.md)

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/val_ranking.py [--y]
    # -> benchmarks/results/val_ranking.md (and .json; --out STEM elsewhere) through
    #    benchmarks/_common.py; eval reports under --work

Scores the shipped models (the zoo of ``interir models`` with weights, and the dark-channel prior;
classical-nlm is left out: about 40 s a whole image on one thread, and it removes neither rain nor haze)
on the validation sets of ``configs/cpu-real-mix.yaml`` with ``interir eval``: the real ``val/``
pairs as they are, and the synthetic set written once as a paired folder (the exact 8-bit pairs
the trainer validates on). Each set is scored on RGB, the trainer's convention (``--y``: the
sets that track a benchmark scored on Y also on Y). The benchmark scores are read from
``results/comparison.json`` (Rain100H and SOTS-indoor-40 on Y, CBSD68-MDIR's average on RGB),
not re-measured. For each pair of columns the
script reports Kendall's tau between the two rankings of the models (1: the same order, 0: no
relation) and whether both columns pick the same best network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import results_stem, write_results
from interir.config import load_config
from interir.data.validation_pairs import build_val_pairs
from interir.utils.io import write_image

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["default", "default-rain", "eb-interir-small", "eb-interir-small-xconv",
          "eb-deepsn-small", "eb-nafnet-small", "classical-dcp"]
#: Validation set -> the benchmark column it should track.
TRACKS = {"RainTrainH_6": "Rain100H (Y)", "SOTS_outdoor_10": "SOTS_indoor_40 (Y)",
          "middlebury_haze_12": "SOTS_indoor_40 (Y)", "synthetic_14": "Average [1] (RGB)"}


def val_folders(config: str, work: Path) -> dict[str, Path]:
    """One folder per validation set of ``config``: real sets as they are, synthetic ones written."""
    cfg = load_config(config)
    sets = cfg.data.val if isinstance(cfg.data.val, list) else [cfg.data.val]
    pairs = build_val_pairs(cfg)
    folders = {}
    for k, section in enumerate(sets):
        name = section.name or f"set{k}"
        if section.kind == "paired" and len(section.roots) == 1 and section.crop is None:
            folders[name] = Path(section.roots[0])
            continue
        folder = work / "sets" / name
        for pair in (p for p in pairs if p["set"] == k):
            stem = pair["name"].replace("/", "__")
            write_image(folder / "input" / f"{stem}.png", pair["input"])
            write_image(folder / "target" / f"{stem}.png", pair["target"])
        folders[name] = folder
    return folders


def run_eval(folders: dict[str, Path], out: Path, y: bool) -> dict:
    """``interir eval`` of :data:`MODELS` on the folders; its summary.json."""
    cmd = [sys.executable, "-m", "interir.cli", "eval", *map(str, folders.values()), "--device",
           "cpu", "-o", str(out), "--y-channel" if y else "--rgb"]
    for m in MODELS:
        cmd += ["-m", m]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two score lists (pairs tied in either count as 0)."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += ((a[i] > a[j]) - (a[i] < a[j])) * ((b[i] > b[j]) - (b[i] < b[j]))
    return s / (n * (n - 1) / 2)


def psnr_table(summary: dict) -> dict[str, dict[str, float]]:
    """``{method: {column: psnr}}`` of an eval or comparison summary."""
    return {r["method"]: {c: v["psnr"] for c, v in r["cells"].items()} for r in summary["rows"]}


def cached_scores(work: Path, conv: str, names: dict[str, str]) -> dict[str, dict[str, float]]:
    """``{method: {"<set> (<conv>)": psnr}}`` from every earlier eval report under ``work``."""
    scores: dict[str, dict[str, float]] = {}
    for path in sorted(work.glob(f"eval-{conv}*/summary.json")):
        for method, cells in psnr_table(json.loads(path.read_text())).items():
            for col, v in cells.items():
                scores.setdefault(method, {})[f"{names.get(col, col)} ({conv})"] = v
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu-real-mix.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/interir-val-ranking"),
                        help="eval reports go here; a set already scored here is not run again")
    parser.add_argument("--y", action="store_true", help="also score on Y the sets whose "
                        "benchmark is scored on Y (the trainer validates on RGB)")
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json and .md are added)")
    args = parser.parse_args()
    folders = val_folders(args.config, args.work)
    names = {Path(f).name: n for n, f in folders.items()}  # eval names columns by folder
    scores: dict[str, dict[str, float]] = {}
    for conv, y in (("RGB", False), ("Y", True))[: 2 if args.y else 1]:
        done = cached_scores(args.work, conv, names)
        # Y only where the tracked benchmark is scored on Y (CBSD68-MDIR is RGB).
        todo = {n: f for n, f in folders.items()
                if f"{n} ({conv})" not in done.get("default", {}) and (not y or TRACKS[n].endswith("(Y)"))}
        if todo:
            run_eval(todo, args.work / f"eval-{conv}-{'-'.join(todo)}", y)
        for method, cells in cached_scores(args.work, conv, names).items():
            scores.setdefault(method, {}).update(cells)
    bench = psnr_table(json.loads((ROOT / "results" / "comparison.json").read_text()))
    write_report(scores, bench, ["Input"] + MODELS, folders, Path(args.out))


def write_report(scores: dict, bench: dict, methods: list[str], folders: dict[str, Path],
                 stem: Path) -> None:
    val_cols = [f"{n} ({c})" for n in folders for c in ("RGB", "Y") if f"{n} ({c})" in scores["default"]]
    bench_cols = sorted(set(TRACKS.values()), key=list(TRACKS.values()).index)
    lines = ["# Validation sets vs benchmarks: PSNR (dB) of the shipped models", "",
             "Validation columns measured here with `interir eval` (config "
             "`configs/cpu-real-mix.yaml`); benchmark columns read from `results/comparison.json`.",
             "", "| method | " + " | ".join(val_cols + bench_cols) + " |",
             "|---|" + "---:|" * (len(val_cols) + len(bench_cols))]
    for m in methods:
        cells = [scores.get(m, {}).get(c) for c in val_cols] + [bench.get(m, {}).get(c) for c in bench_cols]
        lines.append(f"| {m} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in cells) + " |")
    lines += ["", "Ranking agreement over the restoring methods (Input left out): Kendall's tau, "
              "and each column's best network.", "",
              "| validation column | benchmark | tau | tau, networks only | best on validation | best on benchmark |",
              "|---|---|---:|---:|---|---|"]
    agreement = {}
    nets = [m for m in methods if m != "Input"]
    for name, bcol in TRACKS.items():
        for conv in ("RGB", "Y"):
            vcol = f"{name} ({conv})"
            if vcol not in val_cols:
                continue
            a = [scores[m][vcol] for m in nets]
            b = [bench[m][bcol] for m in nets]
            tau = kendall_tau(a, b)
            learned = [i for i, m in enumerate(nets) if not m.startswith("classical")]
            tau_nets = kendall_tau([a[i] for i in learned], [b[i] for i in learned])
            best_v = nets[max(range(len(nets)), key=a.__getitem__)]
            best_b = nets[max(range(len(nets)), key=b.__getitem__)]
            agreement[vcol] = {"benchmark": bcol, "tau": tau, "tau_networks": tau_nets,
                               "best_val": best_v, "best_bench": best_b}
            lines.append(f"| {vcol} | {bcol} | {tau:+.2f} | {tau_nets:+.2f} | {best_v} | {best_b} |")
    paths = write_results(stem, {"scores": scores, "benchmarks": {m: bench.get(m) for m in methods},
                                 "agreement": agreement}, "\n".join(lines), __file__)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()
