"""The core-v3 rematch as a dB-vs-cost curve (issue 25): every model of scripts/rematch_v3.sh,
trained for the same wall-clock on one core, scored on CBSD68-MDIR (RGB), Rain100H and SOTS-40 (Y),
plotted against its multiply-adds per 256x256 image.

    .venv/bin/python benchmarks/rematch_curve.py       # after scripts/rematch_v3.sh

Reads results/eval/rematch3-<model>/{mdir,real}/summary.json and the runs' summaries
(runs/rematch3-<model>/summary.json, for steps and training time, when present); writes
benchmarks/results/rematch_curve.{json,md,png} (``--out STEM`` elsewhere) through
benchmarks/_common.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import interir
from _common import results_stem, write_results
from interir.profiling import count_macs

ROOT = Path(__file__).resolve().parents[1]
# model -> (family for the plot, label)
MODELS = {
    "nafnet-small": ("NAFNet", "w16"),
    "nafnet-small-w24": ("NAFNet", "w24"),
    "nafnet-small-w32": ("NAFNet", "w32"),
    "interir-tiny-v3": ("InterIR v3", "tiny"),
    "interir-small-v3": ("InterIR v3", "small"),
    "interir-small-v3-xconv": ("xconv only (v3)", "small"),
    "deepsn-net-small": ("DeepSN-Net", "2 stages"),
}
COLUMNS = ("mdir", "Rain100H", "SOTS_indoor_40")


def _average(path: Path, method: str) -> dict[str, float]:
    """``{"mdir": avg}`` or ``{"Rain100H": ..., "SOTS_indoor_40": ...}`` of ``method`` in a summary."""
    summary = json.loads(path.read_text())
    row = next(r for r in summary["rows"] if r["method"] == method)
    if path.parent.name == "mdir":
        return {"mdir": row["average"]["psnr"]}
    return {column: cell["psnr"] for column, cell in row["cells"].items()}


def collect() -> list[dict]:
    rows = []
    for model, (family, label) in MODELS.items():
        folder = ROOT / "results" / "eval" / f"rematch3-{model}"
        scores: dict[str, float] = {}
        for part in ("mdir", "real"):
            summary = folder / part / "summary.json"
            if summary.is_file():
                scores.update(_average(summary, model))
        if not scores:
            continue
        net = interir.create_model(model).eval()
        run = ROOT / "runs" / f"rematch3-{model}" / "summary.json"
        run_info = json.loads(run.read_text()) if run.is_file() else {}
        rows.append({
            "model": model, "family": family, "label": label,
            "gmac_256": count_macs(net, (1, 3, 256, 256)) / 1e9,
            "parameters_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "steps": run_info.get("step"), **scores,
        })
    return rows


def table(rows: list[dict]) -> str:
    """The Markdown table of the curve's points (no reproducing line: write_results adds it)."""
    lines = [
        "# Core-v3 rematch: dB against multiply-adds at equal training wall-clock",
        "",
        "After `scripts/rematch_v3.sh`: configs/cpu-small.yaml with "
        "`optim.gain_lr_scale=10`, each model trained for 10 minutes of one idle core's time (steps from "
        "its measured step time), scored on CBSD68-MDIR (RGB, 7 combinations x 68 images) and on "
        "Rain100H and SOTS-indoor-40 (Y). PSNR in dB.",
        "",
        "| model | GMAC @256² | parameters | steps | CBSD68-MDIR avg | Rain100H | SOTS-40 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["family"], r["gmac_256"])):
        cells = [f"{r[c]:.2f}" if c in r else "-" for c in COLUMNS]
        lines.append(
            f"| {r['model']} | {r['gmac_256']:.2f} | {r['parameters_m']:.2f} M | {r['steps'] or '-'} | "
            + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    families = sorted({r["family"] for r in rows})
    for family in families:
        points = sorted((r for r in rows if r["family"] == family and "mdir" in r), key=lambda r: r["gmac_256"])
        xs, ys = [p["gmac_256"] for p in points], [p["mdir"] for p in points]
        ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=family)
        for p in points:
            ax.annotate(p["label"], (p["gmac_256"], p["mdir"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("multiply-adds per 256x256 image (G)")
    ax.set_ylabel("CBSD68-MDIR average PSNR (dB)")
    ax.set_title("Equal training wall-clock (10 min, one core)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json, .md and .png are added)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = collect()
    if not rows:
        raise SystemExit("no results/eval/rematch3-*/ summaries yet: run scripts/rematch_v3.sh first")
    stem = Path(args.out)
    paths = write_results(stem, {"rows": rows}, table(rows), __file__)
    write_plot(rows, stem.with_suffix(".png"))
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()
