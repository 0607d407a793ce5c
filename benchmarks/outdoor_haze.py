"""Outdoor haze with sky (``haze_depth: outdoor``) beside real outdoor haze (docs/degradations.md).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 19 python benchmarks/outdoor_haze.py
    # -> benchmarks/results/outdoor_haze.md (and .json; --out STEM elsewhere), through
    #    benchmarks/_common.py

Each pair is described by ``haze_pair_stats`` of ``benchmarks/degradation_stats.py`` (fitted
airlight, transmission median and spread, depth ratio, centring, the hazy image's luma gain,
contrast and saturation kept, dark channel), plus two outdoor measures: *top far*, the correlation
of the optical depth ``-log t`` with the height in the image (1: depth grows steadily toward the
top), and *sky*, the share of the clean image that :func:`interir.degradations.sky_mask` calls sky.
Real: the 10 RESIDE SOTS-outdoor validation pairs (only read, to describe them; they choose
recipes and checkpoints, never train). Ours: training photographs (the Rain100H overlap and the
validation split left out, every 9th of the rest) hazed at whole-image size with the stage-7 and
stage-8 depths and rounded to 8 bits. ``--figure`` (default docs/images/outdoor_haze.png) shows
the outdoor depth on two CC-BY photos with sky from the test fixtures (scikit-learn's china.jpg
and scikit-image's rocket.jpg): clean, sky mask, depth, hazed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import results_stem, write_results
from degradation_stats import (
    HAZE_KEYS, finite, haze_pair_stats, markdown, summary, to8, training_images,
)
from interir.degradations import (
    DegradationPipeline, Haze, HazeParams, HazeSampling, patch_depth, sky_mask,
)
from interir.utils.io import list_images, read_image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KEYS = HAZE_KEYS + ["top_far", "sky"]

#: Our recipes: depth mode, airlight range and largest haze level (levels uniform in (0, max]).
RECIPES = {
    "scene-wide (stage 7), A 0.5-1.0, levels to 200": ("scene-wide", (0.5, 1.0), 200),
    "outdoor, A 0.5-1.0, levels to 200 (a third of stage 8's haze)": ("outdoor", (0.5, 1.0), 200),
}


def outdoor_stats(hazy: torch.Tensor, clear: torch.Tensor) -> dict[str, float]:
    """``haze_pair_stats`` (``top_far`` included) plus ``sky`` for ``(3, H, W)`` images in [0, 1]."""
    return {**haze_pair_stats(hazy, clear), "sky": float(sky_mask(clear[None]).float().mean())}


def sots_outdoor_rows(data: Path) -> list[dict]:
    """Statistics of the SOTS-outdoor validation pairs, ``hazy/<id>_<A>_<beta>.jpg``."""
    root = data / "val" / "SOTS_outdoor_10"
    clear = {p.stem: p for p in list_images(root / "clear")}
    return [outdoor_stats(read_image(p).image, read_image(clear[p.stem.split("_")[0]]).image)
            for p in list_images(root / "hazy")]


def training_photos(data: Path, every: int) -> list[Path]:
    """Every ``every``-th BSDS training photo that is neither a Rain100H target nor held out."""
    listing = (ROOT / "configs/splits/bsds432-val.txt").read_text().splitlines()
    held_out = {line.split()[0] for line in listing if line.strip() and not line.startswith("#")}
    return [p for p in training_images(data, 10**6) if p.name not in held_out][::every]


def recipe_rows(photos: list[Path], depth: str, airlight: tuple[float, float], top: float,
                seed: int = 0) -> list[dict]:
    """Statistics of each photo hazed once (seeded) with the given recipe."""
    pipe = DegradationPipeline("haze", {"haze": top}, haze_sampling=HazeSampling(airlight=airlight))
    g, gd = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    rows = []
    for path in photos:
        clean = read_image(path).image[None]
        d = patch_depth(1, *clean.shape[-2:], gd, mode=depth, clean=clean)
        hazy = pipe.apply(clean, pipe.sample(1, g), d)
        rows.append(outdoor_stats(to8(hazy[0]), clean[0]))
    return rows


def outdoor_figure(data: Path, out: Path, width: int = 256, level: float = 150.0) -> int:
    """Clean / sky / depth / hazy for two fixture photos with sky; returns the PNG's bytes."""
    from PIL import Image

    rows = []
    for name in ("sklearn_china.jpg", "skimage_rocket.jpg"):
        clean = read_image(data / "fixture" / "clean_cc0" / name).image[None]
        clean = torch.nn.functional.interpolate(
            clean, size=(round(clean.shape[-2] * width / clean.shape[-1]), width), mode="area")
        depth = patch_depth(1, *clean.shape[-2:], torch.Generator().manual_seed(3), "outdoor",
                            clean=clean)
        hazy = Haze()(clean, HazeParams(torch.tensor([level]), torch.tensor([0.9])), depth)
        sky = sky_mask(clean).float().expand(-1, 3, -1, -1)
        shade = (depth / depth.max()).expand(-1, 3, -1, -1)
        rows.append(torch.cat([clean, sky, shade, hazy], dim=-1)[0])
    grid = torch.cat(rows, dim=-2).clamp(0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    arr = (grid * 255 + 0.5).byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data root")
    parser.add_argument("--every", type=int, default=9, help="take every N-th training photo")
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json and .md are added)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "outdoor_haze.png",
                        help="where the figure goes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos = training_photos(args.data, args.every)
    sets = {"SOTS-outdoor (the 10 validation pairs)": sots_outdoor_rows(args.data)}
    for name, (depth, airlight, top) in RECIPES.items():
        sets[f"ours: {name}"] = recipe_rows(photos, depth, airlight, top)
        print(name, "done", flush=True)
    table = markdown(f"Haze: SOTS-outdoor vs {len(photos)} training photos hazed by our recipes",
                     sets, KEYS)
    text = ("# Outdoor haze with sky vs SOTS-outdoor\n\nCells: median [10th, 90th percentile] over "
            "the images of a set.\n\n" + table)
    paths = write_results(Path(args.out), finite(
        {"summary [median, p10, p90]": {k: summary(v) for k, v in sets.items()}}), text, __file__)
    print(paths[-1].read_text())
    print(f"wrote {args.figure} ({outdoor_figure(args.data, args.figure) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
