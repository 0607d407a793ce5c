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

That recipe is the ``"classic"`` style, kept unchanged so that old seeds give old images. Its
streaks are thin, soft and of one kind; the standard synthetic rain sets are not ([ours], measured
in ``docs/degradations.md``): Rain100L has sparse, bright, sharp streaks in one direction, Rain100H
dense streaks in several directions over a veil of rain accumulation, Rain800/Rain1400 many
orientations and magnitudes. The *layered* rain covers that range:

1. up to :data:`MAX_LAYERS` streak layers; layer ``k`` of ``L`` runs at
   ``angle + spread * (k / (L - 1) - 1/2)`` degrees and is ``falloff**k`` times as long, wide and
   bright as the first (farther rain: shorter, thinner, dimmer);
2. every pixel seeds a streak of layer ``k`` with probability
   ``density * level / (25600 * L)`` (the classic density times ``density``, split over the
   layers); a seed's own uniform draw also sets its amplitude in ``(1 - STREAK_JITTER, 1]``;
3. a streak is a ``length x width`` box at the layer's angle, its edges blurred by a Gaussian of
   standard deviation ``blur`` pixels (sharp at 0.3, soft at 2);
4. each layer is clipped to [0, 1], scaled by ``brightness`` (stored in ``blend``) and the layers
   are *added* to the image together with a uniform gray ``veil``:
   ``out = clip(x + veil + sum_k brightness_k * r_k, 0, 1)`` -- Rain100H's rain is additive: a
   pair's residual hardly depends on the background's brightness (``docs/degradations.md``).

The styles of :data:`RAIN_STYLES` are ranges for these parameters (:func:`rain_sampling_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from interir.degradations.common import SEED_HIGH, as_batch_vector, check_batch, per_image_field

__all__ = [
    "RainParams",
    "RainSampling",
    "LayeredRainSampling",
    "RainMix",
    "Rain",
    "sample_rain_params",
    "rain_sampling_for",
    "streak_kernel",
    "streak_layer",
    "layered_kernel",
    "layered_rain",
    "RAIN_MARGIN",
    "RAIN_STYLES",
    "STYLE_NAMES",
    "LAYERED_MARGIN",
    "MAX_LAYERS",
    "STREAK_JITTER",
    "SEED_PROBABILITY_SCALE",
    "CLASSIC_FIELD_VALUES",
]

#: Margin (pixels) around the image where seeds are also drawn; bounds the kernel radius.
RAIN_MARGIN = 32
#: A pixel seeds a streak with probability ``level / SEED_PROBABILITY_SCALE``.
SEED_PROBABILITY_SCALE = 25600.0
#: Margin (pixels) of the layered rain ([ours]); streaks are at most ``2 * margin - 8`` long.
LAYERED_MARGIN = 64
#: Most streak layers of the layered rain (Rain100H's "up to five directions").
MAX_LAYERS = 5
#: A layered streak's amplitude is ``1 - STREAK_JITTER * v`` with v uniform in [0, 1) ([ours]).
STREAK_JITTER = 0.5
#: ``RainParams.style`` codes: 0 the classic recipe, 1 the layered rain.
STYLE_NAMES: tuple[str, ...] = ("classic", "layered")
#: Rain styles selectable by name (:func:`rain_sampling_for`, ``data.rain_style``).
RAIN_STYLES: tuple[str, ...] = ("classic", "sparse", "heavy", "varied", "benchmark")


#: The layered-only fields of a classic image (and of a ``RainParams`` built without them).
CLASSIC_FIELD_VALUES = {"style": 0, "layers": 1.0, "spread": 0.0, "blur": 0.5, "veil": 0.0,
                     "falloff": 1.0, "density": 1.0}


@dataclass
class RainParams:
    """Per-image rain parameters, all ``(B,)``.

    The first six fields are those of the classic recipe; the others (defaults: the classic
    values of ``CLASSIC_FIELD_VALUES``) matter only where ``style`` is 1 (layered).

    Attributes:
        level: rain level; 0 means no rain. Classic: seed probability ``level / 25600``.
        angle: streak direction in degrees from vertical (positive: the lower end of a streak
            lies to the right of its upper end); layered: the layers' mean direction.
        length: streak length in pixels (at most ``2 * RAIN_MARGIN - 8``; layered: of the first
            layer, at most ``2 * LAYERED_MARGIN - 8``).
        width: classic: standard deviation in pixels of the Gaussian blur across the streak
            (>= 0.3); layered: full width in pixels of the first layer's streaks.
        blend: classic: brightness the streak layer is blended toward, in [0, 1]; layered: the
            brightness a first-layer streak adds, in [0, 1].
        seed: int64 seed of the image's seed field.
        style: int64 code, 0 classic, 1 layered (:data:`STYLE_NAMES`).
        layers: number of streak layers, an integer in [1, MAX_LAYERS].
        spread: angle in degrees between the first and the last layer.
        blur: standard deviation in pixels of the Gaussian softening the streak edges (>= 0.3).
        veil: uniform gray brightness added (rain accumulation), in [0, 1].
        falloff: each layer is ``falloff`` times as long, wide and bright as the one before.
        density: seed density as a multiple of the classic one at the same level.
    """

    level: torch.Tensor
    angle: torch.Tensor
    length: torch.Tensor
    width: torch.Tensor
    blend: torch.Tensor
    seed: torch.Tensor
    style: torch.Tensor | None = None
    layers: torch.Tensor | None = None
    spread: torch.Tensor | None = None
    blur: torch.Tensor | None = None
    veil: torch.Tensor | None = None
    falloff: torch.Tensor | None = None
    density: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name, value in CLASSIC_FIELD_VALUES.items():
            if getattr(self, name) is None:
                dtype = torch.int64 if name == "style" else torch.float32
                setattr(self, name, torch.full_like(self.level, value, dtype=dtype))

    def to(self, device) -> "RainParams":
        return RainParams(*(t.to(device) for t in self._fields()))

    def select(self, idx: torch.Tensor) -> "RainParams":
        return RainParams(*(t[idx] for t in self._fields()))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        """All fields, in declaration order (the positional order of the constructor)."""
        return tuple(getattr(self, f.name) for f in fields(self))


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


@dataclass(frozen=True)
class LayeredRainSampling:
    """Ranges from which the layered rain's sub-parameters are drawn (uniformly) ([ours]).

    ``layers`` is drawn as an integer in ``[low, high]`` (both included); ``brightness`` becomes
    ``RainParams.blend``. The other names are those of :class:`RainParams`. The defaults are the
    ``"sparse"`` style.
    """

    angle: tuple[float, float] = (-20.0, 20.0)
    spread: tuple[float, float] = (0.0, 0.0)
    layers: tuple[int, int] = (1, 1)
    length: tuple[float, float] = (20.0, 60.0)
    width: tuple[float, float] = (0.8, 1.8)
    blur: tuple[float, float] = (0.3, 0.5)
    brightness: tuple[float, float] = (0.6, 0.95)
    veil: tuple[float, float] = (0.0, 0.0)
    falloff: tuple[float, float] = (1.0, 1.0)
    density: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        lo, hi = self.layers
        if not (int(lo) == lo and int(hi) == hi and 1 <= lo <= hi <= MAX_LAYERS):
            raise ValueError(
                f"layers must be integers 1 <= low <= high <= {MAX_LAYERS}, got {self.layers}"
            )
        for name in _LAYERED_FIELDS:
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(
                    f"{name} must be a range [low, high] with low <= high, got {(lo, hi)}"
                )


#: Column order of the layered draws (one uniform each).
_LAYERED_FIELDS: tuple[str, ...] = (
    "angle", "spread", "layers", "length", "width",
    "blur", "brightness", "veil", "falloff", "density",
)


@dataclass(frozen=True)
class RainMix:
    """Several layered samplings; each image draws one of them uniformly ([ours])."""

    styles: tuple[LayeredRainSampling, ...]

    def __post_init__(self) -> None:
        if not self.styles:
            raise ValueError("RainMix needs at least one LayeredRainSampling")


#: Rain100L-like: one direction, sparse, bright and sharp ([ours], see docs/degradations.md).
SPARSE = LayeredRainSampling()
#: Rain100H-like: 2-5 directions, dense, with a veil of accumulation ([ours]).
HEAVY = LayeredRainSampling(
    angle=(-12.0, 12.0), spread=(0.0, 30.0), layers=(2, 5), length=(40.0, 100.0),
    width=(1.0, 2.5), blur=(0.3, 0.6), brightness=(0.3, 0.55), veil=(0.0, 0.12),
    falloff=(0.7, 1.0), density=(0.8, 2.0),
)
#: Rain800/Rain1400-like: many orientations and magnitudes ([ours]).
VARIED = LayeredRainSampling(
    angle=(-45.0, 45.0), spread=(0.0, 60.0), layers=(1, 4), length=(10.0, 100.0),
    width=(0.8, 3.0), blur=(0.3, 2.0), brightness=(0.2, 0.8), veil=(0.0, 0.1),
    falloff=(0.5, 1.0), density=(0.3, 3.0),
)


def rain_sampling_for(style: str) -> "RainSampling | LayeredRainSampling | RainMix":
    """The sampling of a style of :data:`RAIN_STYLES`.

    ``"classic"`` is the original recipe (old seeds give old images); ``"sparse"``, ``"heavy"``
    and ``"varied"`` are Rain100L-, Rain100H- and Rain800/Rain1400-like layered rain;
    ``"benchmark"`` draws one of those three per image.

    Raises:
        ValueError: an unknown name (the message lists the styles).
    """
    table = {"classic": RainSampling(), "sparse": SPARSE, "heavy": HEAVY, "varied": VARIED,
             "benchmark": RainMix((SPARSE, HEAVY, VARIED))}
    if style not in table:
        raise ValueError(f"unknown rain style {style!r}; use one of {', '.join(RAIN_STYLES)}")
    return table[style]


def sample_rain_params(
    levels: torch.Tensor,
    generator: torch.Generator,
    sampling: "RainSampling | LayeredRainSampling | RainMix | str" = RainSampling(),
) -> RainParams:
    """Draw the rain sub-parameters for given levels.

    Args:
        levels: ``(B,)`` rain levels (on the generator's device).
        generator: seeded generator. Classic: consumes a ``(B, 4)`` uniform draw then ``(B,)``
            int64 seeds (exactly as before the layered styles existed). Layered: a ``(B,)``
            style index (a :class:`RainMix` only), a ``(B, 10)`` uniform draw, ``(B,)`` seeds.
        sampling: sub-parameter ranges, or a style name of :data:`RAIN_STYLES`.
    """
    if isinstance(sampling, str):
        sampling = rain_sampling_for(sampling)
    if isinstance(sampling, (LayeredRainSampling, RainMix)):
        return _sample_layered(levels, generator, sampling)
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


def _sample_layered(
    levels: torch.Tensor, generator: torch.Generator, sampling: "LayeredRainSampling | RainMix"
) -> RainParams:
    """Layered rain parameters for ``(B,)`` levels (draw order: see :func:`sample_rain_params`)."""
    b, dev = levels.shape[0], levels.device
    styles = sampling.styles if isinstance(sampling, RainMix) else (sampling,)
    ranges = torch.tensor(
        [[getattr(st, name) for name in _LAYERED_FIELDS] for st in styles], dtype=torch.float64
    ).to(dev)  # (S, 10, 2)
    pick = torch.zeros(b, dtype=torch.long, device=dev)
    if isinstance(sampling, RainMix):
        pick = torch.randint(len(styles), (b,), generator=generator, device=dev)
    u = torch.rand(b, len(_LAYERED_FIELDS), generator=generator, device=dev, dtype=torch.float64)
    lo, hi = ranges[pick, :, 0], ranges[pick, :, 1]
    v = lo + (hi - lo) * u
    k = _LAYERED_FIELDS.index("layers")
    v[:, k] = torch.minimum(lo[:, k] + torch.floor(u[:, k] * (hi[:, k] - lo[:, k] + 1)), hi[:, k])
    seed = torch.randint(0, SEED_HIGH, (b,), generator=generator, device=dev)
    col = {name: v[:, i].float() for i, name in enumerate(_LAYERED_FIELDS)}
    return RainParams(
        level=levels.float(), angle=col["angle"], length=col["length"], width=col["width"],
        blend=col["brightness"], seed=seed, style=torch.ones(b, dtype=torch.int64, device=dev),
        layers=col["layers"], spread=col["spread"], blur=col["blur"], veil=col["veil"],
        falloff=col["falloff"], density=col["density"],
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
    s = _fft_convolve(seeds, k, m)[:, m : m + height, m : m + width]
    flat = s.reshape(n, -1)
    lo = flat.min(dim=1).values.view(n, 1, 1)
    hi = flat.max(dim=1).values.view(n, 1, 1)
    span = hi - lo
    has_rain = span > 1e-3
    r = torch.where(has_rain, (s - lo) / torch.where(has_rain, span, torch.ones_like(span)), 0.0)
    return r.clamp(0.0, 1.0).unsqueeze(1)


def _box(d: torch.Tensor, size: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
    """At ``d``: a box of width ``size`` centred at 0, convolved with a Gaussian (std ``blur``)."""
    s2 = math.sqrt(2.0) * blur
    return 0.5 * (torch.erf((d + size / 2.0) / s2) - torch.erf((d - size / 2.0) / s2))


def layered_kernel(
    angle: torch.Tensor,
    length: torch.Tensor,
    width: torch.Tensor,
    blur: torch.Tensor,
    radius: int = LAYERED_MARGIN,
) -> torch.Tensor:
    """Blurred-rectangle streak kernels, one per entry.

    Args:
        angle: ``(n,)`` degrees from vertical.
        length: ``(n,)`` streak length in pixels (clamped to ``2 * radius - 8``).
        width: ``(n,)`` full streak width in pixels.
        blur: ``(n,)`` Gaussian standard deviation of the edges, pixels (clamped to >= 0.3).
        radius: kernel radius; the kernel is ``(2 * radius + 1)`` square.

    Returns:
        ``(n, 2r+1, 2r+1)`` float32 kernels in [0, 1]; about 1 inside a streak wider than
        ``2 * blur`` (a thinner one is dimmer: its light is spread by the blur).
    """
    dtype = torch.float32
    c = torch.arange(-radius, radius + 1, device=angle.device, dtype=dtype)
    yy, xx = c[:, None], c[None, :]
    theta = torch.deg2rad(angle.to(dtype)).view(-1, 1, 1)
    dx, dy = torch.sin(theta), torch.cos(theta)
    along, across = xx * dx + yy * dy, xx * dy - yy * dx
    size = length.to(dtype).clamp(1.0, 2.0 * radius - 8.0).view(-1, 1, 1)
    b = blur.to(dtype).clamp_min(0.3).view(-1, 1, 1)
    return _box(across, width.to(dtype).clamp_min(0.1).view(-1, 1, 1), b) * _box(along, size, b)


def _fft_convolve(fields_: torch.Tensor, kernels: torch.Tensor, margin: int) -> torch.Tensor:
    """Convolve ``(n, Hp, Wp)`` fields with ``(n, 2m+1, 2m+1)`` kernels (circular, by FFT)."""
    n, hp, wp = fields_.shape
    canvas = torch.zeros(n, hp, wp, device=fields_.device, dtype=torch.float32)
    canvas[:, : 2 * margin + 1, : 2 * margin + 1] = kernels
    canvas = torch.roll(canvas, shifts=(-margin, -margin), dims=(1, 2))  # kernel centre at (0, 0)
    spec = torch.fft.rfft2(fields_) * torch.fft.rfft2(canvas)
    return torch.fft.irfft2(spec, s=(hp, wp))


def _layer_geometry(params: RainParams, device) -> dict[str, torch.Tensor]:
    """Angle, length, width, brightness, seed probability of each (image, layer), ``(n, 5)``."""
    f32 = dict(device=device, dtype=torch.float32)
    k = torch.arange(MAX_LAYERS, **f32)[None]
    n_layers = params.layers.to(**f32).round().clamp(1, MAX_LAYERS)[:, None]
    frac = torch.where(n_layers > 1, k / (n_layers - 1).clamp_min(1.0) - 0.5, torch.zeros_like(k))
    scale = params.falloff.to(**f32)[:, None] ** k
    prob = params.density.to(**f32) * params.level.to(**f32) / SEED_PROBABILITY_SCALE
    return {
        "angle": params.angle.to(**f32)[:, None] + params.spread.to(**f32)[:, None] * frac,
        "length": params.length.to(**f32)[:, None] * scale,
        "width": params.width.to(**f32)[:, None] * scale,
        "bright": params.blend.to(**f32)[:, None] * scale * (k < n_layers),
        "prob": (prob[:, None] / n_layers).expand(-1, MAX_LAYERS),
    }


def layered_rain(
    params: RainParams,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    rng_device: str = "cpu",
) -> torch.Tensor:
    """The additive rain of the layered style: ``veil + sum_k brightness_k * r_k``.

    Args:
        params: per-image rain parameters (n images; the layered fields are used).
        height, width: image size.
        device: device of the result.
        rng_device: where the seed fields are drawn (see ``per_image_field``).

    Returns:
        ``(n, 1, H, W)`` float32 brightness to add, >= 0 (at most ``veil + sum_k brightness_k``).
    """
    m, n = LAYERED_MARGIN, params.level.shape[0]
    hp, wp = height + 2 * m, width + 2 * m
    u = per_image_field(params.seed.view(-1), (MAX_LAYERS, hp, wp), False, device, torch.float32,
                        rng_device)
    g = _layer_geometry(params, device)
    prob = g["prob"].view(n, MAX_LAYERS, 1, 1)
    seeds = torch.where(u < prob, 1.0 - STREAK_JITTER * u / prob.clamp_min(1e-12), 0.0)
    blur = params.blur.to(device, torch.float32)[:, None].expand(-1, MAX_LAYERS)
    k = layered_kernel(g["angle"].flatten(), g["length"].flatten(), g["width"].flatten(),
                       blur.flatten(), radius=m)
    layer = _fft_convolve(seeds.view(-1, hp, wp), k, m).view(n, MAX_LAYERS, hp, wp)
    layer = layer[:, :, m : m + height, m : m + width].clamp(0.0, 1.0)
    rain = (layer * g["bright"].view(n, MAX_LAYERS, 1, 1)).sum(dim=1, keepdim=True)
    return rain + params.veil.to(device, torch.float32).view(n, 1, 1, 1)


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
            params: per-image rain parameters (``style`` picks the recipe per image).

        Returns:
            ``(B, C, H, W)`` rainy images in [0, 1]; exactly ``x`` where the level is 0.
        """
        check_batch(x)
        b, _, h, w = x.shape
        level = as_batch_vector(params.level, b, x.device)
        style = as_batch_vector(params.style, b, x.device, torch.int64)
        out = x.clone()
        for code in (0, 1):
            active = torch.nonzero((level > 0) & (style == code)).flatten()
            if active.numel() == 0:
                continue
            sub = params.select(active.to(params.level.device))
            xa = x[active]
            if code == 0:
                r = streak_layer(sub, h, w, x.device, self.rng_device).to(x.dtype)
                blend = as_batch_vector(sub.blend, active.numel(), x.device, x.dtype)
                out[active] = (xa * (1.0 - r) + blend.view(-1, 1, 1, 1) * r).clamp(0.0, 1.0)
            else:
                rain = layered_rain(sub, h, w, x.device, self.rng_device).to(x.dtype)
                out[active] = (xa + rain).clamp(0.0, 1.0)
        return out
