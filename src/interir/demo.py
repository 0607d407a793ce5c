"""The out-of-the-box demo: degrade a shipped CC0 photo, restore it with the default model.

``run_demo`` applies haze + rain + noise with a fixed seed to ``assets/demo_clean.png``, restores
it, and writes a side-by-side sheet (degraded | restored | clean) with the scores of each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from interir.degradations import DegradationPipeline
from interir.inference import restore_tensor
from interir.loading import load_model
from interir.metrics import psnr, ssim
from interir.utils.io import image_to_uint, read_image, write_image

DEMO_IMAGE = Path(__file__).parent / "assets" / "demo_clean.png"
DEMO_LEVELS = {"haze": 60.0, "rain": 150.0, "noise": 15.0}
"""Moderate levels, inside the training ranges (haze <= 150, rain <= 300, noise <= 50)."""


@dataclass
class DemoResult:
    """Scores (RGB, 8-bit, no crop) of the degraded input and the restoration, and the sheet path."""

    degraded_psnr: float
    degraded_ssim: float
    restored_psnr: float
    restored_ssim: float
    sheet: Path
    seconds: float


def side_by_side(images: list[torch.Tensor], labels: list[str], gap: int = 8) -> torch.Tensor:
    """Concatenate ``(3, H, W)`` images left to right with white gaps; returns ``(3, H', W')``.

    Labels are drawn onto a white band above each panel.
    """
    height, width = images[0].shape[-2:]
    band = 22
    sheet = Image.new("RGB", (len(images) * width + (len(images) - 1) * gap, height + band), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels)):
        left = index * (width + gap)
        sheet.paste(Image.fromarray(image_to_uint(image.clamp(0, 1), 8)), (left, band))
        draw.text((left + 4, 4), label, fill="black")
    return torch.from_numpy(np.asarray(sheet).copy()).permute(2, 0, 1).float() / 255


def run_demo(out_dir: str | Path = "demo_output", model_spec: str = "default", seed: int = 0,
             image: str | Path | None = None) -> DemoResult:
    """Run the demo and write ``out_dir/demo.png`` (plus the three images on their own).

    Args:
        out_dir: output folder (created).
        model_spec: ``"default"`` (the shipped model), a checkpoint or run folder, or a model name.
        seed: seed of the degradation draw (rain streak positions, noise).
        image: a clean RGB image to use instead of the shipped CC0 photo.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    clean = read_image(image or DEMO_IMAGE).image.unsqueeze(0)
    pipeline = DegradationPipeline(combinations="haze+rain+noise", levels=DEMO_LEVELS)
    degraded, _ = pipeline(clean, torch.Generator().manual_seed(seed))
    # Quantise to 8 bits, as a degraded photo on disk would be.
    degraded = torch.round(degraded * 255) / 255
    model = load_model(model_spec, "cpu")
    restored = restore_tensor(model, degraded)
    scores = {
        name: (psnr(x, clean).item(), ssim(x, clean).item()) for name, x in [("degraded", degraded), ("restored", restored)]
    }
    labels = [
        f"degraded  {scores['degraded'][0]:.2f} dB / {scores['degraded'][1]:.3f}",
        f"restored  {scores['restored'][0]:.2f} dB / {scores['restored'][1]:.3f}",
        "clean",
    ]
    sheet = side_by_side([degraded[0], restored[0], clean[0]], labels)
    sheet_path = write_image(out / "demo.png", sheet)
    for name, x in [("degraded", degraded), ("restored", restored), ("clean", clean)]:
        write_image(out / f"{name}.png", x[0])
    return DemoResult(*scores["degraded"], *scores["restored"], sheet_path, time.perf_counter() - start)
