"""Diagnostics behind the default model's haze recipe (written up in benchmarks/results/haze_probes.md).

Each command writes its rows to ``benchmarks/results/haze_diagnostics_<command>.json`` (``--out
STEM`` to change), with the command that made them and the environment.

    .venv/bin/python benchmarks/haze_diagnostics.py airlight-fit      # SOTS-40: A and t per pair
    .venv/bin/python benchmarks/haze_diagnostics.py airlight-bias -m default -m runs/x/best
    .venv/bin/python benchmarks/haze_diagnostics.py size -m default --set sots --limit 12 \
        --tiles 0,192,256 --windows 192,288
    .venv/bin/python benchmarks/haze_diagnostics.py airlight-rescale -m default --set sots --limit 12

``airlight-fit`` fits the scattering model ``I = J t + A (1 - t)`` to each SOTS-indoor-40 pair
(hazy I, clear J): for each gray airlight A on a 0.01 grid in [0.6, 1.0] the per-pixel t is the
least-squares fit over the three channels, and the A with the smallest residual wins. It reads the
evaluation images only to describe their haze; nothing is trained on them.

``airlight-bias`` hazes 8 clean CBSD68 images with a uniform transmission t and airlight A, restores
them, and reports the PSNR and the mean signed error (restored - clean): a positive bias means
haze brightness left in the output, i.e. an airlight estimate that is too low.

``size`` restores the first ``--limit`` pairs of a set whole, in tiles (``--tiles``, overlap a
quarter of the tile) and with every channel attention pooling over a window (``--windows``, in
input pixels; see ``InterIRConfig.pool_window``), and prints the PSNR of each (Y for SOTS and
Rain100H, RGB for a CBSD68-MDIR column): does the network behave on whole images as on patches?

``airlight-rescale`` scales each input so that its dark-channel airlight estimate (He et al.)
becomes a target value, restores, and scales back: does telling the network the airlight help?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import results_stem, write_results

from interir.metrics.image import psnr
from interir.utils.io import list_images, read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def airlight_fit(data: Path) -> list[dict]:
    """Per-pair fitted airlight, transmission quantiles and residual for SOTS-indoor-40."""
    rows = []
    grid = torch.arange(60, 101, dtype=torch.float64) / 100.0
    clear_by_scene = {p.stem: p for p in list_images(data / "eval" / "SOTS_indoor_40" / "clear")}
    for hazy_path in list_images(data / "eval" / "SOTS_indoor_40" / "hazy"):
        clear_path = clear_by_scene[hazy_path.stem.split("_")[0]]
        hazy = read_image(hazy_path).image.double()
        clear = read_image(clear_path).image.double()
        best = None
        for a in grid:
            num = ((hazy - a) * (clear - a)).sum(0)
            den = ((clear - a) ** 2).sum(0).clamp_min(1e-6)
            t = (num / den).clamp(0, 1)
            err = float(((hazy - (clear * t + a * (1 - t))) ** 2).mean())
            if best is None or err < best[0]:
                best = (err, float(a), t)
        err, a, t = best
        q = torch.quantile(t.flatten()[::7].float(), torch.tensor([0.05, 0.5, 0.95])).tolist()
        rows.append({"pair": hazy_path.name, "airlight": a, "t_p05": q[0], "t_median": q[1],
                     "t_p95": q[2], "rmse": err**0.5})
    return rows


def airlight_bias(spec: str, data: Path, n_images: int = 8) -> list[dict]:
    """PSNR and mean signed error of a model on clean images under uniform haze (A, t)."""
    from interir.loading import resolve_model

    label, model = resolve_model(spec, "cpu")
    clean = [read_image(p).image[None] for p in list_images(data / "eval" / "CBSD68" / "clean")[:n_images]]
    rows = []
    for a in (0.6, 0.8, 1.0):
        for t in (0.5, 0.75):
            p_in, p_out, bias = [], [], []
            for j in clean:
                hazy = j * t + a * (1 - t)
                with torch.no_grad():
                    out = model(hazy).clamp(0, 1)
                p_in.append(float(psnr(hazy, j)))
                p_out.append(float(psnr(out, j)))
                bias.append(float((out - j).mean()))
            n = len(clean)
            rows.append({"model": label, "airlight": a, "t": t, "input_psnr": sum(p_in) / n,
                         "output_psnr": sum(p_out) / n, "mean_bias": sum(bias) / n})
    return rows


def _pairs(which: str, data: Path, limit: int) -> tuple[list[tuple[Path, Path]], bool]:
    """First ``limit`` (input, target) paths of SOTS-40, Rain100H or a CBSD68-MDIR column, and
    whether the set is scored on Y."""
    if which == "sots":
        root = data / "eval" / "SOTS_indoor_40"
        clear = {p.stem: p for p in list_images(root / "clear")}
        return [(h, clear[h.stem.split("_")[0]]) for h in list_images(root / "hazy")[:limit]], True
    if which == "rain100h":
        root = data / "eval" / "Rain100H"
        clean = {p.stem: p for p in list_images(root / "norain")}
        return [(r, clean[r.stem]) for r in list_images(root / "rain")[:limit]], True
    root = Path("results/cbsd68-mdir") / which  # made by `interir synth ... --seed 2025`
    if not root.is_dir():
        raise SystemExit(f"{root} not found: run `interir synth {data}/eval/CBSD68/clean "
                         "results/cbsd68-mdir --seed 2025` first, or pass --set sots|rain100h")
    inputs = {p.stem: p for p in list_images(root / "input")}
    targets = {p.stem: p for p in list_images(root / "target")}
    return [(inputs[k], targets[k]) for k in sorted(inputs)[:limit]], False


def _score_variants(pairs, y_channel: bool, variants: dict) -> dict[str, list[float]]:
    """PSNR of each ``variants[label](input) -> restored`` on each pair, printed as it goes."""
    scores: dict[str, list[float]] = {label: [] for label in variants}
    for input_path, target_path in pairs:
        x, y = read_image(input_path).image[None], read_image(target_path).image[None]
        for label, restore in variants.items():
            scores[label].append(float(psnr(restore(x).clamp(0, 1), y, y_channel=y_channel)))
        print(input_path.name, "  ".join(f"{k}: {v[-1]:.2f}" for k, v in scores.items()), flush=True)
    print("mean", "  ".join(f"{k}: {sum(v) / len(v):.3f}" for k, v in scores.items()))
    return scores


def size_probe(spec: str, which: str, data: Path, limit: int, tiles: list[int], windows: list[int]):
    """Whole image vs tiles vs windowed channel attention, on the first ``limit`` pairs."""
    from interir.loading import resolve_model
    from interir.inference import restore_tensor
    from interir.models.layers import WindowedMeanPool

    _, model = resolve_model(spec, "cpu")
    pools = [(name, m) for name, m in model.named_modules() if isinstance(m, WindowedMeanPool)]
    loaded = {name: m.window for name, m in pools}
    s = getattr(getattr(model, "config", None), "downsample", 1)

    def windowed(window: int):
        def run(x):
            for name, m in pools:  # full-resolution blocks (the refinement) take the window as is
                m.window = window if name.startswith("refine") else max(1, window // s)
            try:
                return restore_tensor(model, x, tile=0)
            finally:
                for name, m in pools:
                    m.window = loaded[name]
        return run

    def tiled(tile: int):
        return lambda x: restore_tensor(model, x, tile=tile, overlap=tile // 4 if tile else None)

    variants = {"whole" if tile == 0 else f"tiles {tile}": tiled(tile) for tile in tiles}
    for window in windows:
        variants[f"window {window}"] = windowed(window)
    pairs, y_channel = _pairs(which, data, limit)
    return _score_variants(pairs, y_channel, variants)


def airlight_rescale(spec: str, which: str, data: Path, limit: int, targets: list[float]):
    """Scale the input so its estimated airlight becomes ``target``, restore, scale back."""
    from interir.classical import dark_channel, estimate_airlight
    from interir.loading import resolve_model
    from interir.inference import restore_tensor

    _, model = resolve_model(spec, "cpu")

    def rescaled(target: float):
        def run(x):
            airlight = estimate_airlight(x, dark_channel(x)).amax(dim=1, keepdim=True)
            scale = target / airlight
            return restore_tensor(model, (x * scale).clamp(0, 1), tile=0) / scale
        return run

    variants = {"as is": lambda x: restore_tensor(model, x, tile=0)}
    variants.update({f"A->{t:.1f}": rescaled(t) for t in targets})
    pairs, y_channel = _pairs(which, data, limit)
    return _score_variants(pairs, y_channel, variants)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["airlight-fit", "airlight-bias", "size", "airlight-rescale"])
    parser.add_argument("-m", "--model", action="append", default=[], help="model spec (repeatable)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None,
                        help="results stem (writes STEM.json); default "
                             "benchmarks/results/haze_diagnostics_<command>")
    parser.add_argument("--set", default="sots", help="sots, rain100h or a CBSD68-MDIR column (size, airlight-rescale)")
    parser.add_argument("--limit", type=int, default=12, help="first N pairs of the set")
    parser.add_argument("--tiles", type=_ints, default=[0], help="tile sizes, 0 = whole image (size)")
    parser.add_argument("--windows", type=_ints, default=[], help="pooling windows in pixels (size)")
    parser.add_argument("--targets", default="0.7,0.8,0.9", help="airlight targets (airlight-rescale)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "airlight-fit":
        rows = airlight_fit(args.data)
        for r in rows:
            print(f"{r['pair']:<12} A={r['airlight']:.2f}  t p05/median/p95 = "
                  f"{r['t_p05']:.2f}/{r['t_median']:.2f}/{r['t_p95']:.2f}  rmse {r['rmse']:.4f}")
        medians = sorted(r["t_median"] for r in rows)
        print(f"{len(rows)} pairs: A in [{min(r['airlight'] for r in rows):.2f}, "
              f"{max(r['airlight'] for r in rows):.2f}], median t from {medians[0]:.2f} to {medians[-1]:.2f}")
    elif args.what in ("size", "airlight-rescale"):
        if len(args.model) != 1:
            parser.error(f"{args.what} takes exactly one -m MODEL")
        if args.what == "size":
            rows = size_probe(args.model[0], args.set, args.data, args.limit, args.tiles, args.windows)
        else:
            targets = [float(v) for v in args.targets.split(",")]
            rows = airlight_rescale(args.model[0], args.set, args.data, args.limit, targets)
    else:
        if not args.model:
            parser.error("airlight-bias needs at least one -m MODEL")
        rows = [r for spec in args.model for r in airlight_bias(spec, args.data)]
        print("| model | A | t | input PSNR | output PSNR | mean signed error |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['airlight']:.1f} | {r['t']:.2f} | {r['input_psnr']:.2f} | "
                  f"{r['output_psnr']:.2f} | {r['mean_bias']:+.3f} |")
    stem = args.out or results_stem(__file__).with_name(f"haze_diagnostics_{args.what}")
    write_results(stem, {"what": args.what, "rows": rows}, None, __file__)


if __name__ == "__main__":
    main()
