"""Small building blocks shared by the networks: channel LayerNorm, SimpleGate, size padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` map, independently per pixel.

    Unlike BatchNorm it never mixes samples, which keeps every network here batch-independent.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # var_mean is one fused pass; addcmul fuses the affine part.
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        normed = (x - mean) * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias.view(1, -1, 1, 1), normed, self.weight.view(1, -1, 1, 1))


class SimpleGate(nn.Module):
    """Split the channels into two halves and multiply them: ``(B, 2C, H, W) -> (B, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom/right of ``x`` so H and W become multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`. Reflection (rather
    than zeros) keeps the image statistics at the border, which matters for the Gram-matrix
    initialisation of the degradation factors; when the image is too small to reflect (pad >= size)
    the edge is replicated instead.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (H, W)``."""
    return x[..., : size[0], : size[1]]


def check_image_batch(x: object, min_size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, 3, H, W)`` floating tensor with H, W >= min_size."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"expected a batch of RGB images of shape (B, 3, H, W), got shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0) or convert grayscale with x.expand(-1, 3, -1, -1)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert 8-bit images with x.float() / 255"
        )
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"image of size {x.shape[-2]}x{x.shape[-1]} is smaller than this model's minimum "
            f"{min_size}x{min_size}; upscale or pad it first"
        )
