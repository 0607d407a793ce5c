"""Knock-outs of a trained InterIR (issue 25): what the explainable convolution's per-image
modulation and the data term add, measured by switching each off in the trained network.

- ``modulation``: every explainable conv runs as its plain convolution (``A = 1``,
  :func:`interir.models.explainable_conv.modulation_disabled`).
- ``data-term``: each stage's data-term weights set to zero (``w_d = 0`` for the residual form,
  ``w1 = w2 = 0`` for the free form), so ``P`` acts only through the Newton direction.

Pairs: 128-px centre crops of a synthetic suite written by ``interir synth`` (default: the
CBSD68-MDIR suite of scripts/reproduce_results.sh), ``--per-combination`` images of each of its
seven combinations. Also reports the explainable convs' mean ``|A - 1|`` on those crops.

    .venv/bin/python benchmarks/knockouts.py -m eb-interir-small-v3 -m eb-interir-small

Writes benchmarks/results/knockouts.{json,md} (``--out STEM`` elsewhere) through
benchmarks/_common.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch

from _common import results_stem, write_results
from interir.loading import load_model
from interir.metrics import psnr
from interir.models.explainable_conv import explainable_convs, modulation_disabled
from interir.models.unfolding import RESM
from interir.utils.io import read_image

ROOT = Path(__file__).resolve().parents[1]


def load_crops(suite: Path, per_combination: int, crop: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(degraded, clean)`` centre crops, ``(3, crop, crop)`` in [0, 1]."""
    manifest = json.loads((suite / "manifest.json").read_text())
    pairs = []
    for combination in manifest["combinations"]:
        inputs = sorted((suite / combination / "input").glob("*.png"))[:per_combination]
        for path in inputs:
            degraded, clean = read_image(path).image, read_image(suite / combination / "target" / path.name).image
            top, left = (degraded.shape[-2] - crop) // 2, (degraded.shape[-1] - crop) // 2
            pairs.append(tuple(t[:, top : top + crop, left : left + crop] for t in (degraded, clean)))
    return pairs


@contextlib.contextmanager
def data_term_disabled(model: torch.nn.Module):
    """Zero the data-term weights of every RESM (forward hooks on their weight nets)."""
    handles = []
    for module in model.modules():
        if isinstance(module, RESM) and hasattr(module, "term_weights"):
            residual = module.residual_data_term

            def zero(_module, _inputs, output, residual=residual):
                if residual:  # softplus(-30) ~ 1e-13: w_d = 0
                    return (torch.full_like(output[0], -30.0), output[1])
                return (torch.zeros_like(output[0]), torch.zeros_like(output[1]), output[2])

            handles.append(module.term_weights.register_forward_hook(zero))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def mean_psnr(model, pairs) -> float:
    return sum(psnr(model(x[None]).clamp(0, 1), y[None]).item() for x, y in pairs) / len(pairs)


@torch.no_grad()
def attention_deviation(model, pairs) -> float | None:
    """Mean ``|A - 1|`` over every explainable conv, tap and crop."""
    convs = explainable_convs(model)
    if not convs:
        return None
    total, count = 0.0, 0
    for conv in convs.values():
        conv.store_explanation = True
    for x, _ in pairs:
        model(x[None])
        for conv in convs.values():
            total += (conv.last_attention - 1).abs().mean().item()
            count += 1
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", action="append", required=True, help="model spec (repeatable)")
    parser.add_argument("--suite", default=str(ROOT / "results" / "cbsd68-mdir"))
    parser.add_argument("--per-combination", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--out", default=str(results_stem(__file__)), help="results stem (.json and .md are added)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = load_crops(Path(args.suite), args.per_combination, args.crop)
    rows = []
    for spec in args.model:
        model = load_model(spec, "cpu").eval()
        full = mean_psnr(model, pairs)
        with modulation_disabled(model):
            no_modulation = mean_psnr(model, pairs)
        with data_term_disabled(model):
            no_data_term = mean_psnr(model, pairs)
        rows.append({
            "model": spec, "psnr": full, "modulation_knockout_db": no_modulation - full,
            "data_term_knockout_db": no_data_term - full, "mean_abs_A_minus_1": attention_deviation(model, pairs),
        })
        print(rows[-1])
    lines = [
        "# Knock-outs of trained InterIR networks",
        "",
        f"{len(pairs)} {args.crop}-px centre crops of CBSD68-MDIR ({args.per_combination} per combination), PSNR (RGB) "
        "with each part switched off in the trained network, minus the full network's.",
        "",
        "| model | PSNR (dB) | modulation off (A = 1) | data term off | mean abs(A - 1) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        dev = "-" if r["mean_abs_A_minus_1"] is None else f"{r['mean_abs_A_minus_1']:.3f}"
        lines.append(
            f"| {r['model']} | {r['psnr']:.2f} | {r['modulation_knockout_db']:+.2f} | {r['data_term_knockout_db']:+.2f} | {dev} |"
        )
    paths = write_results(Path(args.out), {"pairs": len(pairs), "rows": rows}, "\n".join(lines), __file__)
    print(paths[-1].read_text())


if __name__ == "__main__":
    main()
