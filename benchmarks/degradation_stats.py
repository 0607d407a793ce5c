"""Statistics of our synthetic degradations beside the real evaluation sets (docs/degradations.md).

    nice -n 19 .venv/bin/python benchmarks/degradation_stats.py rain     # Rain100H vs each style
    nice -n 19 .venv/bin/python benchmarks/degradation_stats.py haze     # SOTS-indoor-40 vs ours
    nice -n 19 .venv/bin/python benchmarks/degradation_stats.py noise    # noise levels of each set
    nice -n 19 .venv/bin/python benchmarks/degradation_stats.py figure   # the figure of the doc
    nice -n 19 .venv/bin/python benchmarks/degradation_stats.py all      # all four

Each command prints a Markdown table and writes its section (rows summarised, the table, the
command that made it) to ``benchmarks/results/degradation_stats.json`` and ``.md`` (``--out STEM``
elsewhere) through benchmarks/_common.py, keeping the other commands' sections. The evaluation images are only
read, to describe them and to show them beside our samples; every synthetic sample is made from the
clean *training* images (``train/bsds432``), never from an evaluation image.

Rain (``rain``) is described by the gray residual ``R = rainy - clean`` of a pair: its mean, its
20th percentile (the veil: what even the pixels between streaks gain), the brightness of the
streaks (99th percentile minus the veil), the share of pixels a streak brightens by more than 0.1,
the mean residual on bright backgrounds (clean luma 0.5-0.75) over that on dark ones (below 0.3):
about 1 for rain *added* to the image, well below 1 for a blend toward a gray value; the streak
direction and its spread (gradient orientation of R: the dominant direction and the
angle range holding 80% of the gradient energy), and the streak width and length (twice the
distance at which R's autocorrelation falls to one half, across and along the dominant direction).
Ours: the first ``--n`` training images (without the Rain100H backgrounds), levels drawn as in
training (uniform in (0, 300]).

Haze (``haze``) fits the scattering model ``I = J t + A (1 - t)`` to each pair (:func:`fit_haze`)
and reports the airlight, its colour (spread of the per-channel airlights), the transmission's
median and 5-95% spread, the depth range (90th over 10th percentile of ``-log t``), whether the
depth is centred, and whole-image statistics of the hazy image beside the clean one. Ours are
rounded to 8 bits first, as the real sets are.

Noise (``noise``) estimates sigma (:func:`noise_sigma`) on every set, calibrated on training images
with known added noise, and tallies the noise levels each training mix draws.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import command, results_stem, write_results
from interir.degradations import DegradationPipeline, HazeSampling, patch_depth
from interir.utils.io import list_images, read_image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SECTIONS = ("rain", "haze", "noise")
LUMA = (0.299, 0.587, 0.114)


def gray(x: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` RGB in [0, 1] -> ``(H, W)`` luma (BT.601 weights)."""
    return sum(w * c for w, c in zip(LUMA, x))


def quantiles(v: torch.Tensor, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of a large tensor (subsampled to at most ~1M values: torch.quantile's limit)."""
    flat = v.flatten().double()
    step = max(1, flat.numel() // 1_000_000)
    return torch.quantile(flat[::step], torch.tensor(qs, dtype=torch.float64)).tolist()


def orientation(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Streak orientation of each pixel of ``(H, W)`` ``r`` from its gradient.

    Returns:
        ``(theta, weight)``, flat: the direction perpendicular to the gradient in degrees from
        vertical in [-90, 90) (positive: the lower end lies to the right, as ``RainParams.angle``),
        and the squared gradient magnitude.
    """
    gx = (r[:-1, 1:] - r[:-1, :-1]).flatten()
    gy = (r[1:, :-1] - r[:-1, :-1]).flatten()
    theta = -torch.rad2deg(torch.atan2(gy, gx))
    return (theta + 90.0) % 180.0 - 90.0, gx**2 + gy**2


def direction_stats(theta: torch.Tensor, weight: torch.Tensor) -> tuple[float, float]:
    """Dominant direction (doubled-angle mean) and the width of the central 80% of the energy, deg;
    NaN for a residual without any gradient (no streak in the image)."""
    if float(weight.sum()) <= 1e-12:
        return math.nan, math.nan
    rad = torch.deg2rad(2.0 * theta)
    sin, cos = float((weight * rad.sin()).sum()), float((weight * rad.cos()).sum())
    dom = 0.5 * math.degrees(math.atan2(sin, cos))
    dev = (theta - dom + 90.0) % 180.0 - 90.0
    order = torch.argsort(dev)
    cum = torch.cumsum(weight[order], 0) / weight.sum().clamp_min(1e-12)
    edges = torch.tensor([0.1, 0.9], dtype=cum.dtype)
    lo, hi = torch.searchsorted(cum, edges).clamp_max(len(cum) - 1)
    return dom, float(dev[order][hi] - dev[order][lo])


def half_distance(r: torch.Tensor, angle: float, reach: int = 160) -> float:
    """Twice the distance (pixels) at which the autocorrelation of ``r`` along ``angle`` halves."""
    h, w = r.shape
    z = r - r.mean()
    spec = torch.fft.rfft2(z, s=(2 * h, 2 * w))
    ac = torch.fft.irfft2(spec.abs() ** 2, s=(2 * h, 2 * w))
    ac = torch.fft.fftshift(ac / ac[0, 0].clamp_min(1e-12))
    t = torch.arange(0, reach, 0.25, dtype=ac.dtype)
    a = math.radians(angle)
    ys, xs = h + t * math.cos(a), w + t * math.sin(a)
    grid = torch.stack([xs / (2 * w - 1) * 2 - 1, ys / (2 * h - 1) * 2 - 1], -1).view(1, 1, -1, 2)
    prof = F.grid_sample(ac[None, None], grid, align_corners=True)[0, 0, 0]
    below = torch.nonzero(prof < 0.5).flatten()
    return 2.0 * float(t[below[0]]) if below.numel() else 2.0 * reach


def rain_residual_stats(rainy: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Describe the rain of one pair of ``(3, H, W)`` images in [0, 1] (see the module doc)."""
    x = gray(clean.double())
    r = gray(rainy.double()) - x
    p20, p99 = quantiles(r, (0.2, 0.99))
    dark, bright = x < 0.3, (x > 0.5) & (x < 0.75)
    ratio = (float(r[bright].mean() / r[dark].mean()) if min(dark.sum(), bright.sum()) >= 500
             and float(r[dark].mean()) > 1e-6 else math.nan)
    veil = max(p20, 0.0)
    dom, spread = direction_stats(*orientation(r))
    stats = {"mean": float(r.mean()), "veil": veil, "streak": p99 - veil,
             "coverage": float((r - veil > 0.1).double().mean()), "bright/dark": ratio,
             "angle": dom, "spread": spread, "width": math.nan, "length": math.nan}
    if not math.isnan(dom):  # NaN: no streak at all
        stats["width"] = half_distance(r, dom + 90.0, reach=40)
        stats["length"] = half_distance(r, dom)
    return stats


def summary(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Median, 10th and 90th percentile of each statistic over the images (NaNs left out)."""
    out = {}
    for key in rows[0]:
        v = torch.tensor([r[key] for r in rows], dtype=torch.float64)
        v = v[~torch.isnan(v)]
        out[key] = quantiles(v, (0.5, 0.1, 0.9)) if v.numel() else [math.nan] * 3
    return out


def training_images(data: Path, n: int, exclude_rain100h: bool = True) -> list[Path]:
    """The first ``n`` clean training images (sorted), without the Rain100H backgrounds."""
    root = data / "train" / "bsds432"
    skip = set()
    listing = root / "overlap_with_Rain100H.txt"
    if exclude_rain100h and listing.is_file():
        lines = listing.read_text().splitlines()
        skip = {ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")}
    return [p for p in list_images(root) if p.name not in skip][:n]


def synthetic_rain_rows(
    data: Path, style: str, n: int, level: float | None, seed: int = 0
) -> list[dict]:
    """Rain statistics of ``n`` training images rained with ``style`` (levels as in training)."""
    fixed = None if level is None else {"rain": level}
    pipe = DegradationPipeline("rain", levels=fixed, rain_sampling=style)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for path in training_images(data, n):
        clean = read_image(path).image
        rainy, params = pipe(clean[None], g)
        rows.append({**rain_residual_stats(rainy[0], clean), "level": float(params.rain.level[0])})
    return rows


def real_rain_rows(data: Path, n: int) -> list[dict]:
    """Rain statistics of the first ``n`` Rain100H test pairs (read only, to describe them)."""
    root = data / "eval" / "Rain100H"
    pairs = [(root / "rain" / s, root / "norain" / s) for s in rain100h_names(root, n)]
    return [rain_residual_stats(read_image(r).image, read_image(c).image) for r, c in pairs]


def rain100h_names(root: Path, n: int) -> list[str]:
    """The first ``n`` Rain100H pair names in numeric order (1.png, 2.png, ...)."""
    return sorted((p.name for p in list_images(root / "rain")), key=lambda s: int(Path(s).stem))[:n]


def fit_haze(hazy: torch.Tensor, clear: torch.Tensor) -> tuple[float, torch.Tensor, list[float]]:
    """Fit ``I = J t + A (1 - t)`` to a pair of ``(3, H, W)`` images in [0, 1].

    For each gray airlight A on a grid in [0.5, 1] (0.05 apart, then 0.01 apart around the best)
    the per-pixel t is the least-squares fit over the three channels; the A with the smallest
    residual wins. Then each channel's airlight is fitted with that t (does it have a colour?).

    Returns:
        ``(A, t, [A_R, A_G, A_B])`` with t ``(H, W)`` in [0, 1].
    """
    i, j = hazy.float(), clear.float()

    def fit(a: float) -> tuple[float, float, torch.Tensor]:
        t = (((i - a) * (j - a)).sum(0) / ((j - a) ** 2).sum(0).clamp_min(1e-6)).clamp(0, 1)
        return float(((i - (j * t + a * (1 - t))) ** 2).mean()), a, t

    coarse = min((fit(k / 20.0) for k in range(10, 21)), key=lambda r: r[0])[1]
    fine = [round(coarse + k / 100.0, 2) for k in range(-4, 5) if 0.5 <= coarse + k / 100.0 <= 1.0]
    _, a, t = min((fit(v) for v in fine), key=lambda r: r[0])
    w = 1.0 - t
    den = (w * w).sum().clamp_min(1e-9)
    colour = [float((w * (i[c] - j[c] * t)).sum() / den) for c in range(3)]
    return a, t, colour


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def image_stats(x: torch.Tensor) -> dict[str, float]:
    """Whole-image statistics of a ``(3, H, W)`` image in [0, 1]: mean and std of the luma, the
    mean dark channel (channel minimum, then a 15 x 15 minimum filter) and the mean saturation."""
    y = gray(x.double())
    dark = -F.max_pool2d(-x.double().amin(0)[None, None], 15, stride=1, padding=7)[0, 0]
    mx, mn = x.double().amax(0), x.double().amin(0)
    return {"luma": float(y.mean()), "contrast": float(y.std()), "dark": float(dark.mean()),
            "saturation": float(((mx - mn) / mx.clamp_min(1e-6)).mean())}


def haze_pair_stats(hazy: torch.Tensor, clear: torch.Tensor) -> dict[str, float]:
    """Describe the haze of one pair: the fitted airlight, its colour, the transmission's median
    and spread, the depth range (90th over 10th percentile of the optical depth ``-log t``),
    whether the depth is centred (its correlation with the distance to the image centre) or
    grows toward the top (``top_far``: its correlation with the height in the image), and the
    hazy image's statistics beside the clean one's."""
    hazy, clear = F.avg_pool2d(hazy[None], 2)[0], F.avg_pool2d(clear[None], 2)[0]  # 4x less work
    a, t, colour = fit_haze(hazy, clear)
    h, w = t.shape
    ys = torch.arange(h, dtype=torch.float64)[:, None] - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64)[None, :] - (w - 1) / 2
    depth = -torch.log(t.clamp(0.02, 0.98))
    t_p05, t_med, t_p95 = quantiles(t, (0.05, 0.5, 0.95))
    d_p10, d_p90 = quantiles(depth, (0.1, 0.9))
    hz, cl = image_stats(hazy), image_stats(clear)
    return {
        "airlight": a, "tint": max(colour) - min(colour),
        "t_median": t_med, "t_spread": t_p95 - t_p05,
        "depth_ratio": d_p90 / max(d_p10, 1e-6), "centred": -_corr(depth, (ys**2 + xs**2).sqrt()),
        "top_far": -_corr(depth, ys.expand_as(depth)),
        "luma": hz["luma"], "luma_gain": hz["luma"] - cl["luma"],
        "contrast_ratio": hz["contrast"] / max(cl["contrast"], 1e-6),
        "dark": hz["dark"], "saturation_ratio": hz["saturation"] / max(cl["saturation"], 1e-6),
    }


#: Our haze recipes compared with SOTS: CBSD68-MDIR's, and the shipped default's training haze.
HAZE_RECIPES: dict[str, dict] = {
    "CBSD68-MDIR (centre depth, A 0.5-0.9, level uniform)":
        {"depth": "centre", "airlight": (0.5, 0.9), "power": 1.0},
    "default training (scene depth, A 0.6-1.0, level power 2)":
        {"depth": "scene", "airlight": (0.6, 1.0), "power": 2.0},
    "scene depth, A 0.8-1.0, level uniform":
        {"depth": "scene", "airlight": (0.8, 1.0), "power": 1.0},
    "wide depth, A 0.8-1.0, level uniform": {"depth": "wide", "airlight": (0.8, 1.0), "power": 1.0},
    "wide depth, A 0.8-1.0, levels to 300": {"depth": "wide", "airlight": (0.8, 1.0), "power": 1.0,
                                             "pipeline": {"max_levels": {"haze": 300}}},
}


def to8(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid, as a saved PNG would be."""
    return torch.floor(x.clamp(0, 1) * 255.0 + 0.5) / 255.0


def synthetic_haze_rows(data: Path, recipe: dict, n: int, seed: int = 0) -> list[dict]:
    """Haze statistics of ``n`` training images hazed with ``recipe`` (see :data:`HAZE_RECIPES`)."""
    pipe = DegradationPipeline("haze", haze_sampling=HazeSampling(airlight=recipe["airlight"]),
                               level_power=recipe["power"], **recipe.get("pipeline", {}))
    g, gd = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    rows = []
    for path in training_images(data, n):
        clean = read_image(path).image[None]
        depth = patch_depth(1, *clean.shape[-2:], gd, mode=recipe["depth"], clean=clean)
        params = pipe.sample(1, g)
        hazy = pipe.apply(clean, params, depth)
        level = float(params.haze.level[0])
        rows.append({**haze_pair_stats(to8(hazy[0]), clean[0]), "level": level})
    return rows


def real_haze_rows(data: Path, n: int) -> list[dict]:
    """Haze statistics of the SOTS-indoor-40 pairs (read only, to describe them)."""
    root = data / "eval" / "SOTS_indoor_40"
    clear = {p.stem: p for p in list_images(root / "clear")}
    pairs = list_images(root / "hazy")[:n]
    return [haze_pair_stats(read_image(p).image, read_image(clear[p.stem.split("_")[0]]).image)
            for p in pairs]


def noise_sigma(x: torch.Tensor) -> float:
    """Noise level (0-255 scale) of a ``(C, H, W)`` image in [0, 1], averaged over the channels.

    Donoho's estimator: the median absolute value of the finest diagonal Haar coefficients, over
    0.6745. On 8-bit images those coefficients are multiples of 0.5, so a fixed uniform jitter of
    +-0.25 spreads them before the median (it adds 0.02 to the variance). Texture and JPEG
    blocks raise the estimate a little: compare sets with each other, not with zero.
    """
    g = torch.Generator().manual_seed(0)
    out = []
    for ch in x.double() * 255.0:
        h, w = (ch.shape[0] // 2) * 2, (ch.shape[1] // 2) * 2
        y = ch[:h, :w]
        hh = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 2.0
        hh = hh + (torch.rand(hh.shape, generator=g, dtype=torch.float64) - 0.5) * 0.5
        out.append(float(hh.abs().median()) / 0.6745)
    return sum(out) / len(out)


#: The real sets whose noise is measured: (label, folder under the data root).
NOISE_SETS: tuple[tuple[str, str], ...] = (
    ("training: BSDS432 (clean)", "train/bsds432"),
    ("training: photos (clean)", "train/photos"),
    ("CBSD68 (clean)", "eval/CBSD68/clean"),
    ("McMaster (clean)", "eval/McMaster/clean"),
    ("Rain100H targets", "eval/Rain100H/norain"),
    ("Rain100H inputs", "eval/Rain100H/rain"),
    ("SOTS-indoor-40 clear", "eval/SOTS_indoor_40/clear"),
    ("SOTS-indoor-40 hazy", "eval/SOTS_indoor_40/hazy"),
)


def real_noise_rows(data: Path, n: int) -> dict[str, list[dict]]:
    """Estimated noise level of the first ``n`` images of each set of :data:`NOISE_SETS`."""
    out = {}
    for label, folder in NOISE_SETS:
        files = list_images(data / folder)[:n]
        if label.startswith("training: BSDS432"):
            files = training_images(data, n)
        out[label] = [{"sigma": noise_sigma(read_image(p).image)} for p in files]
    root = data / "eval" / "Rain100H"
    out["Rain100H inputs - targets"] = [
        {"sigma": noise_sigma(read_image(root / "rain" / s).image
                              - read_image(root / "norain" / s).image + 0.5)}
        for s in rain100h_names(root, n)]
    pipe, g = DegradationPipeline("rain", rain_sampling="heavy"), torch.Generator().manual_seed(0)
    out["ours: heavy rain, inputs - targets (no noise added)"] = [
        {"sigma": noise_sigma(to8(pipe(x[None], g)[0][0]) - x + 0.5)}
        for x in (read_image(p).image for p in training_images(data, n))]
    return out


#: Training mixes whose noise levels are tallied (DegradationPipeline keyword arguments).
NOISE_MIXES: dict[str, dict] = {
    "uniform levels (CBSD68-MDIR's seven columns; default training)": {},
    "level power 2 (the shipped default's stages 4-5)": {"level_power": 2.0},
    "level power {noise: 3}": {"level_power": {"noise": 3.0}},
    "level power {noise: 3}, clean fraction 0.1":
        {"level_power": {"noise": 3.0}, "clean_fraction": 0.1},
}
NOISE_BINS = ((0.0, 0.0), (0.0, 2.0), (2.0, 5.0), (5.0, 15.0), (15.0, 50.0))


def noise_mix_shares(n: int = 70000) -> dict[str, dict[str, float]]:
    """Share of images per noise-level bin (0-255) that each mix of :data:`NOISE_MIXES` draws."""
    out = {}
    for name, kw in NOISE_MIXES.items():
        lv = DegradationPipeline(**kw).sample(n, torch.Generator().manual_seed(0)).noise.level
        share = {}
        for lo, hi in NOISE_BINS:
            hit = lv == 0 if hi == 0 else (lv > lo) & (lv <= hi)
            share["0" if hi == 0 else f"({lo:g}, {hi:g}]"] = float(hit.double().mean())
        out[name] = share
    return out


def estimator_rows(data: Path, n: int, sigmas=(0.0, 2.0, 5.0, 15.0, 50.0)) -> dict[str, list[dict]]:
    """The estimator on training images with known added noise (8-bit rounded), to calibrate it."""
    out = {}
    g = torch.Generator().manual_seed(0)
    clean = [read_image(p).image for p in training_images(data, n)]
    for s in sigmas:
        out[f"training + sigma {s:g}"] = [
            {"sigma": noise_sigma(to8(x + s / 255.0 * torch.randn(x.shape, generator=g)))}
            for x in clean]
    return out


def _tile(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size x size`` crop of a ``(3, H, W)`` image (1:1: streaks keep their scale)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top: top + size, left: left + size]


def rain_figure(
    data: Path, out: Path, columns: int = 4, size: int = 120, level: float = 150.0
) -> int:
    """Rain100H test inputs (top row) above our styles on training images; returns the PNG's bytes.

    Every style rains on the same ``columns`` training images at one ``level``; the PNG is
    palette-quantised (256 colours) to stay small.
    """
    from PIL import Image, ImageDraw

    root = data / "eval" / "Rain100H" / "rain"
    real = [_tile(read_image(root / f"{k}.png").image, size) for k in (1, 20, 40, 60)[:columns]]
    clean = [_tile(read_image(p).image, size) for p in training_images(data, 40)[::10][:columns]]
    rows = [("Rain100H (real)", real)]
    for style in ("classic", "sparse", "heavy", "varied"):
        pipe = DegradationPipeline("rain", levels={"rain": level}, rain_sampling=style)
        g = torch.Generator().manual_seed(7)
        rows.append((style, [pipe(c[None], g)[0][0] for c in clean]))
    label_w, pad = 100, 2
    canvas = Image.new("RGB", (label_w + columns * (size + pad), len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, tiles) in enumerate(rows):
        y0 = r * (size + pad)
        draw.text((4, y0 + size // 2 - 6), name, fill="black")
        for c, t in enumerate(tiles):
            arr = (t.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(arr), (label_w + c * (size + pad), y0))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out.stat().st_size


def markdown(title: str, sets: dict[str, list[dict]], keys: list[str]) -> str:
    """A table: one row per set, each cell ``median [p10, p90]`` over the set's images."""
    lines = [f"### {title}", "", "| set | n | " + " | ".join(keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for name, rows in sets.items():
        s = summary(rows)
        cells = [f"{s[k][0]:.3g} [{s[k][1]:.3g}, {s[k][2]:.3g}]" for k in keys]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


RAIN_KEYS = ["mean", "veil", "streak", "coverage", "bright/dark", "angle", "spread", "width",
             "length"]
HAZE_KEYS = ["airlight", "tint", "t_median", "t_spread", "depth_ratio", "centred", "luma_gain",
             "contrast_ratio", "dark", "saturation_ratio"]


def run_rain(data: Path, n: int) -> tuple[str, dict]:
    sets = {"Rain100H test inputs": real_rain_rows(data, n)}
    for style in ("classic", "sparse", "heavy", "varied", "benchmark"):
        sets[f"ours: {style}"] = synthetic_rain_rows(data, style, n, None)
    return markdown("Rain: residual rainy - clean (luma)", sets, RAIN_KEYS), sets


def run_haze(data: Path, n: int) -> tuple[str, dict]:
    sets = {"SOTS-indoor-40": real_haze_rows(data, n)}
    for name, recipe in HAZE_RECIPES.items():
        sets[f"ours: {name}"] = synthetic_haze_rows(data, recipe, n)
    title = "Haze: fitted scattering model and whole-image statistics"
    return markdown(title, sets, HAZE_KEYS), sets


def run_noise(data: Path, n: int) -> tuple[str, dict]:
    sets = {**estimator_rows(data, min(n, 16)), **real_noise_rows(data, n)}
    table = markdown("Noise: estimated sigma (0-255, mean over RGB)", sets, ["sigma"])
    shares = noise_mix_shares()
    keys = list(next(iter(shares.values())))
    table += "\n### Noise levels drawn by each training mix (share of images)\n\n| mix | "
    table += " | ".join(f"sigma {k}" for k in keys) + " |\n|---|" + "---:|" * len(keys) + "\n"
    for mix, share in shares.items():
        table += f"| {mix} | " + " | ".join(f"{share[k]:.3f}" for k in keys) + " |\n"
    return table, {**sets, "mix_shares": shares}


def finite(obj):
    """``obj`` with every NaN float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["rain", "haze", "noise", "figure", "all"])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data root")
    parser.add_argument("--n", type=int, default=40, help="images per set")
    parser.add_argument("--out", default=str(results_stem(__file__)),
                        help="results stem (.json and .md are added); a command replaces its own "
                             "section and keeps the others'")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "rain_styles.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stem = Path(args.out)
    stored = stem.with_suffix(".json")
    stored = json.loads(stored.read_text()) if stored.is_file() else {}
    sections = {k: stored[k] for k in SECTIONS if k in stored}
    ran = False
    for what, run in (("rain", run_rain), ("haze", run_haze), ("noise", run_noise)):
        if args.what in (what, "all"):
            table, sets = run(args.data, args.n)
            print(table, flush=True)
            summaries = {k: summary(v) for k, v in sets.items() if isinstance(v, list)}
            extra = {k: v for k, v in sets.items() if not isinstance(v, list)}
            sections[what] = finite({"n": args.n, "command": command(__file__), "table": table,
                                     "summary [median, p10, p90]": summaries, **extra})
            ran = True
    if args.what in ("figure", "all"):
        print(f"wrote {args.figure} ({rain_figure(args.data, args.figure) / 1024:.0f} KB)")
    if ran:
        write_results(stem, sections, report(sections), __file__)


def report(sections: dict) -> str:
    """The Markdown of every section that holds its table, each under the command that made it."""
    parts = ["# Degradation statistics: ours beside the real evaluation sets", "",
             "Each section names the command that made it; `python benchmarks/degradation_stats.py "
             "all` makes them all again. Cells: median [10th, 90th percentile] over the images of "
             "a set."]
    for what in SECTIONS:
        if "table" in sections.get(what, {}):
            parts += ["", f"## {what} (`{sections[what]['command']}`)", "", sections[what]["table"]]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
