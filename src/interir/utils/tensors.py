"""Small tensor helpers shared across the package."""

from __future__ import annotations

import torch


def centre_crop(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre-crop ``(..., H, W)`` to at most ``size x size`` (``None``: unchanged)."""
    if size is None:
        return image
    height, width = image.shape[-2:]
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top : top + h, left : left + w]
