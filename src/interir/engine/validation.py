"""Scoring a model on in-memory validation pairs, as the trainer does at every validation.

:func:`validate` runs :func:`interir.engine.evaluate.evaluate` (the scoring of ``interir eval``)
on the pairs of :func:`interir.data.validation_pairs.build_val_pairs`, one in-memory dataset per
``data.val`` section, and averages the scores overall and per section.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from interir.engine.evaluate import EvalDataset, EvalOptions, EvalReport, evaluate
from interir.metrics.image import MetricSettings

__all__ = ["validate", "validation_datasets", "validation_scores", "per_set_text"]


def validate(
    model: nn.Module,
    pairs: list[dict[str, Any]],
    device: torch.device,
    y_channel: bool = False,
    crop_border: int = 0,
    autocast: Any = None,
) -> dict[str, float]:
    """Mean PSNR/SSIM of ``model`` on fixed pairs, scored by :func:`interir.engine.evaluate.evaluate`
    (output clamped to [0, 1]; a PSNR above 100 dB, e.g. identical images, counts as 100).

    Returns:
        ``{"psnr", "ssim", "val_images", "seconds", "sets"}``; ``"sets"`` maps each pair's
        ``"set"`` (0 when absent) to that set's mean ``{"psnr", "ssim", "val_images"}``.
    """
    settings = MetricSettings(y_channel=y_channel, crop_border=crop_border)
    options = EvalOptions(settings=settings, device=str(device), log_every=0, autocast=autocast)
    was_training = model.training
    t0 = time.perf_counter()
    try:
        report = evaluate({"model": model}, validation_datasets(pairs), options)
    finally:
        model.train(was_training)
    return dict(validation_scores(report, "model"), seconds=time.perf_counter() - t0)


def validation_datasets(pairs: list[dict[str, Any]]) -> list[EvalDataset]:
    """One in-memory :class:`EvalDataset` per ``"set"`` of the pairs (named ``set<k>``)."""
    sets = sorted({int(pair.get("set", 0)) for pair in pairs})
    return [EvalDataset.from_pairs(f"set{k}", [p for p in pairs if int(p.get("set", 0)) == k])
            for k in sets]


def validation_scores(report: EvalReport, label: str) -> dict[str, Any]:
    """Mean PSNR/SSIM of model ``label`` over a report of :func:`validation_datasets`, overall
    and per set (PSNR capped at 100 dB)."""
    rows = [r for r in report.results if r.model == label]
    ps = [min(r.output_psnr, 100.0) for r in rows]
    ss = [r.output_ssim for r in rows]
    sets: dict[int, dict[str, float]] = {}
    for name in dict.fromkeys(r.dataset for r in rows):
        mine = [i for i, r in enumerate(rows) if r.dataset == name]
        sets[int(name.removeprefix("set"))] = {
            "psnr": sum(ps[i] for i in mine) / len(mine),
            "ssim": sum(ss[i] for i in mine) / len(mine), "val_images": len(mine)}
    n = max(1, len(ps))
    return {"psnr": sum(ps) / n, "ssim": sum(ss) / n, "val_images": len(ps), "sets": sets}


def per_set_text(result: dict[str, Any], ssim: bool = False,
                 names: dict[int, str] | None = None) -> str:
    """``"  [set 0: 21.76, set 1: 21.77]"`` for a :func:`validate` result of several sets, else
    ``""``; ``names`` (``{k: "RainTrainH_6"}``, from ``data.val[k].name``) replaces ``set k``."""
    sets = result.get("sets", {})
    if len(sets) < 2:
        return ""
    names = names or {}
    cells = [f"{names.get(k) or f'set {k}'}: {v['psnr']:.3f}" + (f" / {v['ssim']:.4f}" if ssim else "")
             for k, v in sets.items()]
    return "  [" + ", ".join(cells) + "]"
