"""Rain streaks from sparse random seeds smeared along a line (level in [0, 300]).

Our torch reading of the widely copied OpenCV rain recipe (ARCHITECTURE.md section 6):

1. every pixel becomes a streak seed with probability ``level / 25600`` (density grows with the
   level; level 0 means no seed, so no rain);
2. the seed map is convolved with a line kernel: a segment of ``length`` pixels at ``angle``
   degrees from vertical, blurred across by a Gaussian of standard deviation ``width`` pixels
   (the convolution runs as one batched FFT, each image with its own kernel);
3. the streak layer ``r`` is min-max normalised to [0, 1] per image;
4. it is blended over the image: ``out = x * (1 - r) + blend * r``.

Seeds are drawn over the image plus a margin of :data:`RAIN_MARGIN` pixels on each side, so
streaks enter across the borders instead of thinning out there. The seed field comes from a
generator seeded with the image's own ``seed`` parameter: the same parameters give the same rain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interir.degradations.common import SEED_HIGH, as_batch_vector, check_batch, per_image_field

__all__ = [
    "RainParams",
    "RainSampling",
    "Rain",
    "sample_rain_params",
    "streak_kernel",
    "streak_layer",
    "RAIN_MARGIN",
    "SEED_PROBABILITY_SCALE",
]

#: Margin (pixels) around the image where seeds are also drawn; bounds the kernel radius.
RAIN_MARGIN = 32
#: A pixel seeds a streak with probability ``level / SEED_PROBABILITY_SCALE``.
SEED_PROBABILITY_SCALE = 25600.0


@dataclass
class RainParams:
    """Per-image rain parameters, all ``(B,)``.

    Attributes:
        level: rain level; seed probability ``level / 25600``; 0 means no rain.
        angle: streak direction in degrees from vertical (positive: the lower end of a streak
            lies to the right of its upper end).
        length: streak length in pixels (at most ``2 * RAIN_MARGIN - 8``).
        width: standard deviation in pixels of the Gaussian blur across the streak (>= 0.3).
        blend: brightness the streak layer is blended toward, in [0, 1].
        seed: int64 seed of the image's seed field.
    """

    level: torch.Tensor
    angle: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    blend: torch.Tensor
    seed: torch.Tensor

    def to(self, device) -> "RainParams":
        return RainParams(*(t.to(device) for t in self._fields()))

    def select(self, idx: torch.Tensor) -> "RainParams":
        return RainParams(*(t[idx] for t in self._fields()))

    def _fields(self):
        return (self.level, self.angle, self.length, self.width, self.blend, self.seed)


@dataclass(frozen=True)
class RainSampling:
    """Ranges from which the rain sub-parameters are drawn (uniformly).

    Attributes:
        angle: streak angle from vertical, degrees (the recipe's [-45, 45]).
        length: streak length, pixels.
        width: Gaussian blur across the streak, pixels.
        blend: blend brightness (the recipe's 0.8, widened).
    """

    angle: tuple[float, float] = (-45.0, 45.0)
    length: tuple[float, float] = (10.0, 40.0)
    width: tuple[float, float] = (0.5, 1.5)
    blend: tuple[float, float] = (0.7, 0.9)


def sample_rain_params(
    levels: torch.Tensor, generator: torch.Generator, sampling: RainSampling = RainSampling()
) -> RainParams:
    """Draw the rain sub-parameters for given levels.

    Args:
        levels: ``(B,)`` rain levels (on the generator's device).
        generator: seeded generator; consumes a ``(B, 4)`` uniform draw then ``(B,)`` int64 seeds.
        sampling: sub-parameter ranges.
    """
    b = levels.shape[0]
    u = torch.rand(b, 4, generator=generator, device=levels.device)

    def span(i, r):
        return (r[0] + (r[1] - r[0]) * u[:, i]).float()

    seed = torch.randint(0, SEED_HIGH, (b,), generator=generator, device=levels.device)
    return RainParams(
        level=levels.float(),
        angle=span(0, sampling.angle),
        length=span(1, sampling.length),
        width=span(2, sampling.width),
        blend=span(3, sampling.blend),
        seed=seed,
    )


def streak_kernel(
    angle: torch.Tensor, length: torch.Tensor, width: torch.Tensor, radius: int = RAIN_MARGIN
) -> torch.Tensor:
    """Blurred line-segment kernels, one per image.

    Args:
        angle: ``(n,)`` degrees from vertical.
        length: ``(n,)`` segment length in pixels.
        width: ``(n,)`` Gaussian standard deviation across the segment, pixels.
        radius: kernel radius; the kernel is ``(2 * radius + 1)`` square.

    Returns:
        ``(n, 2r+1, 2r+1)`` kernels, peak value 1 on the segment.
    """
    device, dtype = angle.device, torch.float32
    c = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    yy, xx = c[:, None], c[None, :]
    theta = torch.deg2rad(angle.to(dtype)).view(-1, 1, 1)
    dx, dy = torch.sin(theta), torch.cos(theta)
    half = (length.to(dtype) / 2.0).clamp(0.0, radius - 4.0).view(-1, 1, 1)
    t = torch.maximum(torch.minimum(xx * dx + yy * dy, half), -half)
    dist2 = (xx - t * dx) ** 2 + (yy - t * dy) ** 2
    sigma = width.to(dtype).clamp_min(0.3).view(-1, 1, 1)
    return torch.exp(-dist2 / (2.0 * sigma**2))


def streak_layer(
    params: RainParams,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    rng_device: str = "cpu",
) -> torch.Tensor:
    """The normalised streak layer ``r`` in [0, 1] for each image.

    Args:
        params: per-image rain parameters (n images).
        height, width: image size.
        device: device of the result.
        rng_device: where the seed fields are drawn (see ``per_image_field``).

    Returns:
        ``(n, 1, H, W)`` float32 layer; all zeros for an image without any seed in reach.
    """
    m = RAIN_MARGIN
    n = params.level.shape[0]
    hp, wp = height + 2 * m, width + 2 * m
    u = per_image_field(params.seed.view(-1), (hp, wp), False, device, torch.float32, rng_device)
    prob = (params.level.to(device, torch.float32) / SEED_PROBABILITY_SCALE).view(n, 1, 1)
    seeds = (u < prob).to(torch.float32)
    k = streak_kernel(
        params.angle.to(device), params.length.to(device), params.width.to(device), radius=m
    )
    canvas = torch.zeros(n, hp, wp, device=device, dtype=torch.float32)
    canvas[:, : 2 * m + 1, : 2 * m + 1] = k
    canvas = torch.roll(canvas, shifts=(-m, -m), dims=(1, 2))  # kernel centre at (0, 0)
    spec = torch.fft.rfft2(seeds) * torch.fft.rfft2(canvas)
    s = torch.fft.irfft2(spec, s=(hp, wp))[:, m : m + height, m : m + width]
    flat = s.reshape(n, -1)
    lo = flat.min(dim=1).values.view(n, 1, 1)
    hi = flat.max(dim=1).values.view(n, 1, 1)
    span = hi - lo
    has_rain = span > 1e-3
    r = torch.where(has_rain, (s - lo) / torch.where(has_rain, span, torch.ones_like(span)), 0.0)
    return r.clamp(0.0, 1.0).unsqueeze(1)


class Rain(nn.Module):
    """Blend rain streaks over a batch with explicit per-image parameters.

    Args:
        rng_device: where the seed fields are drawn, ``"cpu"`` (reproducible everywhere) or
            ``"same"`` (the batch's device; faster on GPU).
    """

    def __init__(self, rng_device: str = "cpu") -> None:
        super().__init__()
        self.rng_device = rng_device

    def forward(self, x: torch.Tensor, params: RainParams) -> torch.Tensor:
        """Add rain.

        Args:
            x: ``(B, C, H, W)`` images in [0, 1].
            params: per-image rain parameters.

        Returns:
            ``(B, C, H, W)`` rainy images in [0, 1]; exactly ``x`` where the level is 0.
        """
        check_batch(x)
        b, _, h, w = x.shape
        level = as_batch_vector(params.level, b, x.device)
        active = torch.nonzero(level > 0).flatten()
        if active.numel() == 0:
            return x.clone()
        sub = params.select(active.to(params.level.device))
        r = streak_layer(sub, h, w, x.device, self.rng_device).to(x.dtype)
        blend = as_batch_vector(sub.blend, active.numel(), x.device, x.dtype).view(-1, 1, 1, 1)
        out = x.clone()
        xa = x[active]
        out[active] = (xa * (1.0 - r) + blend * r).clamp(0.0, 1.0)
        return out
