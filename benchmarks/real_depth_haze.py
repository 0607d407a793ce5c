"""Haze on real depth (Middlebury views + disparity) beside SOTS-indoor's (docs/degradations.md).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 19 python benchmarks/real_depth_haze.py
    # -> benchmarks/results/real_depth_haze.md (and .json; --out STEM elsewhere), through
    #    benchmarks/_common.py

Each pair is described by ``haze_pair_stats`` of ``benchmarks/degradation_stats.py`` (the fitted
airlight, transmission median and spread, depth ratio, how centred the depth is, and the hazy
image's luma gain, contrast and saturation kept, and dark channel). Real: the SOTS-indoor pairs of
``eval/SOTS_indoor_40`` (only read, to describe them). Ours: every view of
``train/depth_middlebury`` hazed with its own depth (:class:`interir.data.DepthImageDataset`,
``t = exp(-level / 1000 * d)``) at whole-image size, rounded to 8 bits, for a few level ranges,
and, for reference, the same views hazed with the ``wide`` pseudo-depth of the shipped recipes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import results_stem, write_results
from degradation_stats import HAZE_KEYS, finite, haze_pair_stats, markdown, real_haze_rows, summary, to8
from interir.data.depth import DepthImageDataset
from interir.degradations import DegradationPipeline, HazeSampling, patch_depth

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

#: Our recipes: the depth, airlight range and largest level (levels uniform in (0, max]).
RECIPES = {
    "real depth, A 0.8-1.0, levels to 150": ("real", (0.8, 1.0), 150),
    "real depth, A 0.8-1.0, levels to 200": ("real", (0.8, 1.0), 200),
    "real depth, A 0.8-1.0, levels to 300": ("real", (0.8, 1.0), 300),
    "real depth, A 0.5-1.0, levels to 200": ("real", (0.5, 1.0), 200),
    "wide pseudo-depth (same views), A 0.8-1.0, levels to 300": ("wide", (0.8, 1.0), 300),
}


def depth_rows(ds: DepthImageDataset, depth: str, airlight: tuple[float, float], top: float,
               seed: int = 0) -> list[dict]:
    """Haze statistics of every view hazed once (seeded) with the given recipe."""
    pipe = DegradationPipeline("haze", {"haze": top}, haze_sampling=HazeSampling(airlight=airlight))
    g, gd = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    rows = []
    for i in range(len(ds)):
        item = ds[i]
        clean = item["image"][None]
        if depth == "real":
            d = item["depth"][None]
        else:
            d = patch_depth(1, *clean.shape[-2:], gd, mode=depth, clean=clean)
        params = pipe.sample(1, g)
        hazy = pipe.apply(clean, params, d)
        rows.append({**haze_pair_stats(to8(hazy[0]), clean[0]), "level": float(params.haze.level[0])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data root")
    parser.add_argument("--n", type=int, default=40, help="SOTS pairs to describe")
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json and .md are added)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = DepthImageDataset(args.data / "train" / "depth_middlebury")
    sets = {f"SOTS-indoor ({args.n} pairs of SOTS_indoor_40)": real_haze_rows(args.data, args.n)}
    for name, (depth, airlight, top) in RECIPES.items():
        sets[f"ours: {name}"] = depth_rows(ds, depth, airlight, top)
        print(name, "done", flush=True)
    table = markdown("Haze: SOTS-indoor vs Middlebury views hazed with their real depth", sets,
                     HAZE_KEYS)
    depth_ratio = [float(torch.quantile(d.flatten()[::5], 0.9) / torch.quantile(d.flatten()[::5], 0.1))
                   for d in (ds.depth(i) for i in range(len(ds)))]
    q = torch.tensor(depth_ratio).quantile(torch.tensor([0.5, 0.1, 0.9])).tolist()
    note = (f"\nMiddlebury depth itself (1 / filled disparity, {len(ds)} views): 90th/10th "
            f"percentile ratio {q[0]:.2f} [{q[1]:.2f}, {q[2]:.2f}] (median [p10, p90]).\n")
    text = ("# Real-depth haze vs SOTS-indoor\n\nCells: median [10th, 90th percentile] over "
            "the images of a set.\n\n" + table + note)
    summaries = {k: summary(v) for k, v in sets.items()}
    paths = write_results(Path(args.out), finite(
        {"summary [median, p10, p90]": summaries, "middlebury_depth_ratio": q}), text, __file__)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()
