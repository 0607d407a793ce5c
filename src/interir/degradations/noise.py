"""Additive white Gaussian noise, ``sigma = level / 255`` on [0, 1] images (level in [0, 50]).

The noise is drawn independently per pixel and per channel from a generator seeded with the
image's own ``seed`` parameter, so applying the same parameters gives the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interir.degradations.common import SEED_HIGH, as_batch_vector, check_batch, per_image_field

__all__ = ["NoiseParams", "GaussianNoise", "sample_noise_params"]


@dataclass
class NoiseParams:
    """Per-image noise parameters.

    Attributes:
        level: ``(B,)`` noise level on the 0-255 scale; ``sigma = level / 255``.
        seed: ``(B,)`` int64 seed of the image's noise field.
    """

    level: torch.Tensor
    seed: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        """``(B,)`` standard deviation on [0, 1] images."""
        return self.level / 255.0

    def to(self, device) -> "NoiseParams":
        return NoiseParams(self.level.to(device), self.seed.to(device))

    def select(self, idx: torch.Tensor) -> "NoiseParams":
        return NoiseParams(self.level[idx], self.seed[idx])


def sample_noise_params(levels: torch.Tensor, generator: torch.Generator) -> NoiseParams:
    """Draw the noise seeds for given levels (one int64 draw of B values)."""
    b = levels.shape[0]
    seed = torch.randint(0, SEED_HIGH, (b,), generator=generator, device=levels.device)
    return NoiseParams(level=levels.float(), seed=seed)


class GaussianNoise(nn.Module):
    """Add white Gaussian noise with explicit per-image level and seed.

    Args:
        clip: clip the result to [0, 1].
        rng_device: where the noise is drawn, ``"cpu"`` (reproducible everywhere) or ``"same"``
            (the batch's device; faster on GPU).
    """

    def __init__(self, clip: bool = True, rng_device: str = "cpu") -> None:
        super().__init__()
        self.clip = clip
        self.rng_device = rng_device

    def forward(self, x: torch.Tensor, params: NoiseParams) -> torch.Tensor:
        """Add noise.

        Args:
            x: ``(B, C, H, W)`` images in [0, 1].
            params: per-image level and seed.

        Returns:
            ``(B, C, H, W)`` noisy images (clipped to [0, 1] when ``clip``); exactly ``x`` where
            the level is 0.
        """
        check_batch(x)
        b = x.shape[0]
        level = as_batch_vector(params.level, b, x.device, x.dtype)
        active = torch.nonzero(level > 0).flatten()
        if active.numel() == 0:
            return x.clone()
        seeds = torch.as_tensor(params.seed).view(-1)[active.cpu()]
        noise = per_image_field(
            seeds, tuple(x.shape[1:]), True, x.device, x.dtype, self.rng_device
        )
        out = x.clone()
        sigma = (level[active] / 255.0).view(-1, 1, 1, 1)
        out[active] = x[active] + sigma * noise
        return out.clamp(0.0, 1.0) if self.clip else out
