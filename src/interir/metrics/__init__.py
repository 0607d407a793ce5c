"""Image-quality metrics (PSNR, SSIM) and result tables.

Images are ``(B, 3, H, W)`` (or ``(3, H, W)``) float tensors in ``[0, 1]``; see
:mod:`interir.metrics.image` for the exact conventions.
"""

from interir.metrics.image import (
    MetricSettings,
    prepare_for_metrics,
    psnr,
    psnr_ssim,
    rgb_to_y,
    ssim,
    ssim_map,
)
from interir.metrics.report import ImageResult, SummaryTable, summarize

__all__ = [
    "MetricSettings",
    "prepare_for_metrics",
    "psnr",
    "psnr_ssim",
    "rgb_to_y",
    "ssim",
    "ssim_map",
    "ImageResult",
    "SummaryTable",
    "summarize",
]
