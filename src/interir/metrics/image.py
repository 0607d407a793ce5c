"""PSNR and SSIM in torch, with the two Y-channel conventions used by restoration papers.

Conventions (see ``docs/evaluation.md``; verified against scikit-image, BasicSR and the MATLAB
scripts of MPRNet/Restormer in ``../shared/design/DEPENDENCIES.md`` §1):

* Inputs are ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors in ``[0, data_range]`` (``[0, 1]`` by
  default). All arithmetic is done in float64 on the 0..255 scale.
* ``quantize=True`` (default) first rounds both images to 8 bits, ``round(clamp(x, 0, 1) * 255)``,
  i.e. scores what a saved PNG would score (BasicSR's ``tensor2img`` does the same before its
  metrics). ``quantize=False`` scores the raw float values (not clamped).
* ``y_channel=True`` scores the luma of ITU-R BT.601 YCbCr in the 16..235 range,
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255:

  - ``round_y=False``: Y kept as float, as BasicSR's ``to_y_channel`` does (REF-BasicSR);
  - ``round_y=True``: Y rounded to 8 bits, as MATLAB's ``rgb2ycbcr`` on ``uint8`` does (the
    ``evaluate_PSNR_SSIM.m`` scripts of MPRNet/Restormer, REF-MATLAB). At high PSNR the two differ
    by up to ~0.5 dB, so every report names the one it used.

  ``y_channel=False`` scores the three RGB channels (PSNR on the MSE over all channels, SSIM as
  the mean of the per-channel SSIMs).
* ``crop_border=N`` drops ``N`` pixels on every side before scoring.
* PSNR uses a peak of 255: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
* SSIM (Wang et al. 2004) uses an 11x11 Gaussian window with sigma 1.5, ``C1 = (0.01*255)^2``,
  ``C2 = (0.03*255)^2``, population (not sample) covariances, and averages the SSIM map over the
  *valid* region only (no padding): this is BasicSR's ``calculate_ssim`` and MATLAB's
  ``SSIM_index``, and equals ``skimage.metrics.structural_similarity(..., data_range=255,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "MetricSettings",
    "psnr",
    "ssim",
    "rgb_to_y",
    "prepare_for_metrics",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_PEAK = 255.0


@dataclass(frozen=True)
class MetricSettings:
    """How PSNR/SSIM are computed; printed in the header of every table.

    Attributes:
        y_channel: score the BT.601 Y (luma) channel instead of RGB.
        round_y: round Y to 8 bits (MATLAB / MPRNet / Restormer scripts) instead of keeping it as
            float (BasicSR). Only used with ``y_channel=True``.
        crop_border: pixels dropped on every side before scoring.
        quantize: round both images to 8 bits (``round(clamp(x, 0, 1) * 255)``) before scoring,
            as if they had been saved as 8-bit PNGs.
    """

    y_channel: bool = False
    round_y: bool = False
    crop_border: int = 0
    quantize: bool = True

    def __post_init__(self) -> None:
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")

    def describe(self) -> str:
        """One line naming the convention, e.g. for a table header."""
        if self.y_channel:
            space = (
                "Y channel of YCbCr (BT.601, 16-235), "
                + ("Y rounded to 8 bits (MATLAB/MPRNet/Restormer convention)" if self.round_y
                   else "Y kept as float (BasicSR convention)")
            )
        else:
            space = "RGB (mean over the 3 channels)"
        quant = ("images quantised to 8 bits first" if self.quantize
                 else "float images, no quantisation")
        return (
            f"PSNR/SSIM on {space}; {quant}; border crop {self.crop_border} px; "
            f"peak 255; SSIM {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian (sigma {SSIM_SIGMA}), "
            "valid region"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MetricSettings":
        fields = {"y_channel", "round_y", "crop_border", "quantize"}
        return cls(**{k: v for k, v in data.items() if k in fields})


def rgb_to_y(img255: torch.Tensor, round_y: bool = False) -> torch.Tensor:
    """BT.601 luma of an RGB image on the 0..255 scale.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``. With ``round_y=True`` Y is rounded to an
    integer, halves away from zero as MATLAB's ``rgb2ycbcr`` on ``uint8`` defines it. When the input
    holds integers (8-bit levels) the rounding is done in exact integer arithmetic, so the
    ~1 pixel in 10^5 whose Y is exactly ``k + 0.5`` is rounded up deterministically instead of by
    floating-point noise (float implementations such as scikit-image's round such pixels either
    way, see ``docs/evaluation.md``).

    Args:
        img255: ``(B, 3, H, W)`` RGB on the 0..255 scale.
        round_y: round the result to integers (MATLAB / MPRNet / Restormer convention).

    Returns:
        ``(B, 1, H, W)`` Y in 16..235 (for inputs in 0..255), same dtype as the input.
    """
    r, g, b = img255[:, 0:1], img255[:, 1:2], img255[:, 2:3]
    if round_y and bool((img255 == torch.round(img255)).all()):
        ri, gi, bi = (c.to(torch.int64) for c in (r, g, b))
        n = 65481 * ri + 128553 * gi + 24966 * bi  # 255000 * (Y - 16), exact
        y = 16 + torch.div(n + 127500, 255000, rounding_mode="floor")
        return y.to(img255.dtype)
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    if round_y:
        y = torch.floor(y + 0.5)  # halves away from zero (Y > 0); torch.round is half-to-even
    return y


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must have shape (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}; "
            "convert grayscale images to 3 channels first"
        )
    return x


def prepare_for_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    settings: MetricSettings,
    data_range: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring both images to the space the metrics are computed in (float64, 0..255 scale).

    Returns:
        Two ``(B, C, H', W')`` float64 tensors, ``C`` = 1 (Y) or 3 (RGB), border already cropped.
    """
    pred = _as_batch(pred, "pred")
    target = _as_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}; "
            "crop or resize them to the same size before scoring"
        )
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    scale = _PEAK / float(data_range)
    out = []
    for x in (pred, target):
        x = x.detach().to(torch.float64) * scale
        if settings.quantize:
            x = torch.round(x.clamp(0.0, _PEAK))  # ties are exact .5 only for crafted inputs
        if settings.y_channel:
            x = rgb_to_y(x, round_y=settings.round_y)
        c = settings.crop_border
        if c:
            if x.shape[-2] <= 2 * c or x.shape[-1] <= 2 * c:
                raise ValueError(
                    f"crop_border={c} leaves nothing of a {x.shape[-2]}x{x.shape[-1]} image"
                )
            x = x[..., c:-c, c:-c]
        out.append(x)
    return out[0], out[1]


def _settings(y_channel: bool, round_y: bool, crop_border: int, quantize: bool) -> MetricSettings:
    return MetricSettings(
        y_channel=y_channel, round_y=round_y, crop_border=crop_border, quantize=quantize
    )


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
    quantize: bool = True,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    Args:
        pred: restored image(s), ``(B, 3, H, W)`` or ``(3, H, W)``, values in ``[0, data_range]``.
        target: ground truth, same shape.
        crop_border: pixels dropped on every side.
        y_channel: score the BT.601 Y channel instead of RGB.
        round_y: round Y to 8 bits (MATLAB convention); ignored for RGB.
        quantize: round both images to 8 bits first (default, as for saved PNGs).
        data_range: the value of white in the inputs (1.0 for ``[0, 1]`` tensors).

    Returns:
        ``(B,)`` float64 tensor of PSNR values (``inf`` where the images are identical).
    """
    p, t = prepare_for_metrics(pred, target, _settings(y_channel, round_y, crop_border, quantize),
                               data_range)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse)  # mse == 0 -> inf


def _gaussian_kernel1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    half = (size - 1) / 2.0
    x = torch.arange(size, dtype=dtype, device=device) - half
    k = torch.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _filter_valid(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of every channel, 'valid' region only (no padding)."""
    c = x.shape[1]
    kh = k1d.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k1d.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim_map(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """SSIM map over the valid region of two prepared images (0..255 scale).

    Args:
        p, t: ``(B, C, H, W)`` float tensors on the 0..255 scale, ``H, W >= 11``.

    Returns:
        ``(B, C, H - 10, W - 10)`` SSIM map.
    """
    if p.shape[-2] < SSIM_WINDOW or p.shape[-1] < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after border crop, "
            f"got {p.shape[-2]}x{p.shape[-1]}"
        )
    k = _gaussian_kernel1d(SSIM_WINDOW, SSIM_SIGMA, p.dtype, p.device)
    c1 = (_K1 * _PEAK) ** 2
    c2 = (_K2 * _PEAK) ** 2
    mu_p = _filter_valid(p, k)
    mu_t = _filter_valid(t, k)
    var_p = _filter_valid(p * p, k) - mu_p**2
    var_t = _filter_valid(t * t, k) - mu_t**2
    cov = _filter_valid(p * t, k) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return num / den


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
    quantize: bool = True,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Structural similarity (11x11 Gaussian window, sigma 1.5, valid region), per image.

    Arguments as for :func:`psnr`. For RGB the result is the mean of the three channel SSIMs.

    Returns:
        ``(B,)`` float64 tensor of SSIM values in ``[-1, 1]``.
    """
    p, t = prepare_for_metrics(pred, target, _settings(y_channel, round_y, crop_border, quantize),
                               data_range)
    return ssim_map(p, t).mean(dim=(1, 2, 3))


def psnr_ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    settings: MetricSettings | None = None,
    data_range: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both metrics under one :class:`MetricSettings`, preparing the images once.

    Returns:
        ``(psnr, ssim)``, each a ``(B,)`` float64 tensor.
    """
    settings = settings or MetricSettings()
    p, t = prepare_for_metrics(pred, target, settings, data_range)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse), ssim_map(p, t).mean(dim=(1, 2, 3))


def finite_or_none(value: float) -> float | None:
    """``None`` for ``inf``/``nan`` (JSON has no infinity), the value otherwise."""
    return value if math.isfinite(value) else None
