"""How far is a tiled restoration from the untiled one, with and without shared statistics?

Usage (from the repository root, one thread, on a machine nothing else is running on):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tile_seams.py PHOTO [--models default,default-rain]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tile_seams.py --dry-run   # tiny synthetic image

For each model and each input (the photo as it is, with synthetic heavy rain, with Gaussian noise
of sigma 0.08; the photo resized to ``--width``, 1224 px by default, the size in issue 30), it
restores the image untiled, tiled with per-tile statistics (``shared_stats=False``, the code before
issue 30) and tiled with shared statistics (the default), with the automatic tile and overlap and
fp32, and prints the PSNR of each tiled result against the untiled one and the seconds each took
(one run each; the machine's load moves them). Results go to ``benchmarks/results/tile_seams.md``
and ``.json`` (``--out STEM`` elsewhere) through benchmarks/_common.py, with
``torch.backends.cpu.get_cpu_capability()`` beside the timings.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from _common import results_stem, write_results
from interir import load_pretrained
from interir.degradations.rain import Rain, sample_rain_params
from interir.inference import restore_tensor
from interir.utils.io import read_image


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (120 for identical ones)."""
    return -10 * math.log10(max(1e-12, float(((a - b) ** 2).mean())))


def inputs(photo: Path | None, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``{label: (3, H, W)}``: the photo resized to ``width``, with rain, with noise."""
    if photo is None:
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 160), indexing="ij")
        clean = torch.stack([0.4 + 0.3 * yy, 0.6 + 0.2 * xx, 0.9 - 0.2 * yy])
    else:
        image = read_image(photo).image[None]
        height = round(width * image.shape[-2] / image.shape[-1])
        clean = torch.nn.functional.interpolate(image, size=(height, width), mode="bilinear", antialias=True)[0]
    gen = torch.Generator().manual_seed(seed)
    rainy = Rain()(clean[None], sample_rain_params(torch.tensor([0.6]), gen, "heavy"))[0]
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
    return {"photo": clean, "heavy rain": rainy, "noise 0.08": noisy}


def timed(fn) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(model_name: str, image: torch.Tensor, tile: int | None) -> dict[str, float]:
    """Untiled, per-tile and shared-statistics restorations of one image: PSNRs and seconds."""
    model = load_pretrained(model_name)
    whole, t_whole = timed(lambda: restore_tensor(model, image, tile=0, precision="fp32"))
    per_tile, t_old = timed(lambda: restore_tensor(model, image, tile=tile, precision="fp32", shared_stats=False))
    shared, t_new = timed(lambda: restore_tensor(model, image, tile=tile, precision="fp32"))
    return {
        "per_tile_db": psnr(per_tile, whole), "shared_db": psnr(shared, whole),
        "untiled_s": t_whole, "per_tile_s": t_old, "shared_s": t_new,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photo", nargs="?", type=Path)
    parser.add_argument("--models", default="default,default-rain")
    parser.add_argument("--width", type=int, default=1224)
    parser.add_argument("--inputs", default="photo,heavy rain,noise 0.08", help="which of the inputs")
    parser.add_argument("--dry-run", action="store_true", help="a tiny synthetic image, 64 px tiles")
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem (.json and .md are added)")
    args = parser.parse_args()
    if args.photo is None and not args.dry_run:
        parser.error("name a photo (or pass --dry-run)")
    tile = 64 if args.dry_run else None
    images = inputs(None if args.dry_run else args.photo, args.width)
    shape = tuple(next(iter(images.values())).shape[-2:])
    lines = [
        "# Tiled vs untiled\n",
        f"Photo: {args.photo or 'synthetic'} at {shape[1]}x{shape[0]}; fp32; automatic tile and overlap; "
        f"{torch.get_num_threads()} thread(s); cpu capability {torch.backends.cpu.get_cpu_capability()}; "
        f"torch {torch.__version__}. PSNR of each tiled result against the untiled one.\n",
        "| model | input | per-tile stats (dB) | shared stats (dB) | untiled s | per-tile s | shared s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for name in args.models.split(","):
        for label, image in images.items():
            if label not in args.inputs.split(","):
                continue
            r = measure(name, image, tile)
            row = (f"| {name} | {label} | {r['per_tile_db']:.2f} | {r['shared_db']:.2f} | "
                   f"{r['untiled_s']:.1f} | {r['per_tile_s']:.1f} | {r['shared_s']:.1f} |")
            print(row, flush=True)
            lines.append(row)
            rows.append({"model": name, "input": label, **r})
    if not args.dry_run:
        data = {"photo": str(args.photo), "size": list(shape), "rows": rows}
        paths = write_results(args.out, data, "\n".join(lines), __file__)
        print(f"wrote {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
