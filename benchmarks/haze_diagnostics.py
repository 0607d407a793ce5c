"""Diagnostics behind the default model's haze recipe (results in benchmarks/results/haze_probes.md).

    .venv/bin/python benchmarks/haze_diagnostics.py airlight-fit      # SOTS-40: A and t per pair
    .venv/bin/python benchmarks/haze_diagnostics.py airlight-bias -m default -m runs/x/best

``airlight-fit`` fits the scattering model ``I = J t + A (1 - t)`` to each SOTS-indoor-40 pair
(hazy I, clear J): for each gray airlight A on a 0.01 grid in [0.6, 1.0] the per-pixel t is the
least-squares fit over the three channels, and the A with the smallest residual wins. It reads the
evaluation images only to describe their haze; nothing is trained on them.

``airlight-bias`` hazes 8 clean CBSD68 images with a uniform transmission t and airlight A, restores
them, and reports the PSNR and the mean signed error (restored - clean): a positive bias means
haze brightness left in the output, i.e. an airlight estimate that is too low.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

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
    from interir.engine.evaluate import resolve_model

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["airlight-fit", "airlight-bias"])
    parser.add_argument("-m", "--model", action="append", default=[], help="model spec (repeatable)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the rows here")
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
    else:
        if not args.model:
            parser.error("airlight-bias needs at least one -m MODEL")
        rows = [r for spec in args.model for r in airlight_bias(spec, args.data)]
        print("| model | A | t | input PSNR | output PSNR | mean signed error |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['airlight']:.1f} | {r['t']:.2f} | {r['input_psnr']:.2f} | "
                  f"{r['output_psnr']:.2f} | {r['mean_bias']:+.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
