"""Classical restoration baselines with no learning, usable wherever a model is expected.

Each method is an ``nn.Module`` without parameters mapping ``(B, 3, H, W)`` float images in
``[0, 1]`` to restored images of the same shape and range, so the evaluation engine treats them
like the networks. They are registered for evaluation (not in the neural model registry) under:

* ``classical-dcp``: dark-channel-prior dehazing (He, Sun and Tang, CVPR 2009 / TPAMI 2011), with
  the transmission refined by a guided filter (He, Sun and Tang, ECCV 2010), written in torch;
* ``classical-nlm``: non-local-means denoising (Buades et al. 2005), scikit-image's
  ``denoise_nl_means`` (the ``classical`` extra) with the noise level estimated per image by the
  wavelet MAD rule (:func:`estimate_noise_sigma`, the estimator of skimage's ``estimate_sigma``
  without its PyWavelets dependency);
* ``classical-dcp+nlm``: DCP then NLM, for inputs hit by several degradations.

Neither method removes rain streaks; they are the no-learning reference points of the comparison
table, not competitors on every column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interir.registry import closest_match_hint

__all__ = [
    "ClassicalMethod",
    "DCPConfig",
    "NLMConfig",
    "DarkChannelPriorDehazer",
    "NonLocalMeansDenoiser",
    "ClassicalPipeline",
    "CLASSICAL_METHODS",
    "create_classical",
    "list_classical",
    "is_classical",
    "dark_channel",
    "estimate_airlight",
    "box_filter",
    "guided_filter",
    "estimate_noise_sigma",
]

_GRAY = (0.299, 0.587, 0.114)


# -------------------------------------------------------------------------------- filters
def _min_filter(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Minimum over a ``patch x patch`` window (erosion); edge-replicated, so same size out."""
    r = patch // 2
    xp = F.pad(-x, (r, r, r, r), mode="replicate")
    # separable: a min over a square is a min over rows of mins over columns
    xp = F.max_pool2d(xp, kernel_size=(patch, 1), stride=1)
    return -F.max_pool2d(xp, kernel_size=(1, patch), stride=1)


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """Dark channel: min over colour channels, then min over a ``patch x patch`` window.

    Args:
        image: ``(B, 3, H, W)`` in [0, 1].
        patch: odd window size (15 in He et al.).

    Returns:
        ``(B, 1, H, W)`` dark channel.
    """
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be a positive odd number, got {patch}")
    return _min_filter(image.amin(dim=1, keepdim=True), patch)


def estimate_airlight(image: torch.Tensor, dark: torch.Tensor, top_fraction: float = 0.001):
    """Atmospheric light: mean input colour at the brightest ``top_fraction`` of the dark channel.

    He et al. pick the brightest input pixel among those; the mean is the usual, less noise
    sensitive, variant.

    Args:
        image: ``(B, 3, H, W)`` in [0, 1].
        dark: ``(B, 1, H, W)`` dark channel of ``image``.

    Returns:
        ``(B, 3, 1, 1)`` airlight, at least 0.05 per channel.
    """
    b, c, h, w = image.shape
    k = max(1, int(round(h * w * top_fraction)))
    idx = dark.reshape(b, -1).topk(k, dim=1).indices  # (B, k)
    pixels = image.reshape(b, c, -1).gather(2, idx.unsqueeze(1).expand(b, c, k))
    return pixels.mean(dim=2).clamp_min(0.05).view(b, c, 1, 1)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2r+1) x (2r+1)`` window clipped to the image (O(1) per pixel via cumsum).

    Args:
        x: ``(B, C, H, W)``.
        radius: window radius ``r >= 0``.

    Returns:
        ``(B, C, H, W)`` local means (windows at the border average only the pixels inside).
    """
    if radius <= 0:
        return x

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        # window sum at i = cs[min(i + r + 1, n)] - cs[max(i - r, 0)], with cs[0] = 0:
        # pad cs with r zeros in front and r copies of cs[n] behind, then take two shifted slices.
        n = t.shape[dim]
        cs = torch.cumsum(t, dim=dim)
        zeros = torch.zeros_like(cs.narrow(dim, 0, 1))
        last = cs.narrow(dim, n - 1, 1)
        shape = list(cs.shape)
        shape[dim] = radius
        cs = torch.cat([zeros.expand(shape), zeros, cs, last.expand(shape)], dim=dim)
        return cs.narrow(dim, 2 * radius + 1, n) - cs.narrow(dim, 0, n)

    dtype = x.dtype
    xd = x.to(torch.float64)  # cumulative sums lose precision in float32 on large images
    ones = torch.ones(1, 1, *x.shape[-2:], dtype=torch.float64, device=x.device)
    s = along(along(xd, 2), 3)
    n = along(along(ones, 2), 3)
    return (s / n).to(dtype)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Edge-preserving guided filter with a gray guide (He et al., ECCV 2010, Algorithm 1).

    Args:
        guide: ``(B, 1, H, W)`` guidance image in [0, 1].
        src: ``(B, C, H, W)`` image to filter.
        radius: box radius.
        eps: regularisation; larger = smoother.

    Returns:
        ``(B, C, H, W)`` filtered ``src``.
    """
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius) * guide + box_filter(b, radius)


# ---------------------------------------------------------------------------------- methods
class ClassicalMethod(nn.Module):
    """Base of the no-learning methods: no parameters, processes whole images (never tiled)."""

    #: Read by :func:`interir.models.sizing.needs_whole_image`: DCP estimates one airlight for the
    #: whole image and NLM one noise level, so tiles would each get their own and disagree.
    whole_image = True


@dataclass(frozen=True)
class DCPConfig:
    """Dark-channel-prior settings (defaults from He et al.).

    Attributes:
        patch: dark-channel window (odd).
        omega: fraction of haze removed (keeps a little for depth perception).
        t0: lower bound of the transmission.
        top_fraction: share of the brightest dark-channel pixels used for the airlight.
        guided_radius: guided-filter radius; ``None`` = ``max(8, min(H, W) // 8)``.
        guided_eps: guided-filter regularisation.
    """

    patch: int = 15
    omega: float = 0.95
    t0: float = 0.1
    top_fraction: float = 0.001
    guided_radius: int | None = None
    guided_eps: float = 1e-3


class DarkChannelPriorDehazer(ClassicalMethod):
    """Dark-channel-prior dehazing: ``J = (I - A) / max(t, t0) + A``.

    ``t = 1 - omega * dark(I / A)`` is refined with a guided filter guided by the gray input.
    Input/output: ``(B, 3, H, W)`` in [0, 1].
    """

    def __init__(self, config: DCPConfig | None = None) -> None:
        super().__init__()
        self.config = config or DCPConfig()

    def transmission(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined transmission ``(B, 1, H, W)`` in [t0, 1] and airlight ``(B, 3, 1, 1)``."""
        cfg = self.config
        airlight = estimate_airlight(image, dark_channel(image, cfg.patch), cfg.top_fraction)
        raw = 1.0 - cfg.omega * dark_channel(image / airlight, cfg.patch)
        gray = (image * image.new_tensor(_GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
        radius = cfg.guided_radius or max(8, min(image.shape[-2:]) // 8)
        refined = guided_filter(gray, raw, radius, cfg.guided_eps)
        return refined.clamp(cfg.t0, 1.0), airlight

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.clamp(0.0, 1.0)
        t, airlight = self.transmission(x)
        return ((x - airlight) / t + airlight).clamp(0.0, 1.0)


@dataclass(frozen=True)
class NLMConfig:
    """Non-local-means settings (scikit-image's documented recipe).

    Attributes:
        patch_size: side of the compared patches.
        patch_distance: search radius.
        h_factor: filter strength ``h = h_factor * sigma`` (0.8 with ``fast_mode`` per skimage).
        fast_mode: skimage's fast (box-kernel) variant.
        sigma: noise standard deviation in [0, 1] units; ``None`` = estimated per image.
    """

    patch_size: int = 5
    patch_distance: int = 6
    h_factor: float = 0.8
    fast_mode: bool = True
    sigma: float | None = None


def estimate_noise_sigma(image: torch.Tensor) -> float:
    """Gaussian noise level of an image by Donoho's MAD rule on the finest diagonal Haar band.

    ``sigma = median(|HH|) / 0.6745`` per channel, averaged over channels: the same estimator as
    scikit-image's ``estimate_sigma`` (which uses a db2 wavelet and needs PyWavelets), written
    here with the orthonormal Haar transform so no extra package is needed.

    Args:
        image: ``(3, H, W)`` (or ``(C, H, W)``) in [0, 1], ``H, W >= 2``.

    Returns:
        Estimated standard deviation in [0, 1] units.
    """
    x = image.to(torch.float64)
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    if h == 0 or w == 0:
        raise ValueError(f"image too small to estimate noise: {tuple(image.shape)}")
    x = x[..., :h, :w]
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    sigmas = hh.abs().flatten(-2).median(dim=-1).values / 0.6744897501960817
    return float(sigmas.mean())


def _require_nl_means():
    try:
        from skimage.restoration import denoise_nl_means
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "classical-nlm needs scikit-image; install it with: pip install \"interir[classical]\""
        ) from err
    return denoise_nl_means


class NonLocalMeansDenoiser(ClassicalMethod):
    """Non-local-means denoising of each image (on CPU, via scikit-image).

    Input/output: ``(B, 3, H, W)`` in [0, 1]; the output is on the input's device and dtype.
    The noise level is estimated per image (:func:`estimate_noise_sigma`) unless configured.
    """

    def __init__(self, config: NLMConfig | None = None) -> None:
        super().__init__()
        self.config = config or NLMConfig()
        self.last_sigmas: list[float] = []

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        denoise_nl_means = _require_nl_means()
        cfg = self.config
        out, self.last_sigmas = [], []
        for img in image.detach().clamp(0.0, 1.0).cpu().to(torch.float64):
            arr = img.permute(1, 2, 0).numpy()
            sigma = cfg.sigma if cfg.sigma is not None else estimate_noise_sigma(img)
            self.last_sigmas.append(sigma)
            if sigma <= 0:
                den = arr
            else:
                den = denoise_nl_means(
                    arr, h=cfg.h_factor * sigma, sigma=sigma, fast_mode=cfg.fast_mode,
                    patch_size=cfg.patch_size, patch_distance=cfg.patch_distance,
                    channel_axis=-1,
                )
            out.append(torch.from_numpy(np.ascontiguousarray(den)).permute(2, 0, 1))
        return torch.stack(out).clamp(0.0, 1.0).to(device=image.device, dtype=image.dtype)


class ClassicalPipeline(ClassicalMethod):
    """Run several classical methods one after the other (e.g. DCP then NLM)."""

    def __init__(self, *stages: nn.Module) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            image = stage(image)
        return image


# --------------------------------------------------------------------------------- registry
CLASSICAL_METHODS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "classical-dcp": (DarkChannelPriorDehazer,
                      "dark-channel-prior dehazing + guided-filter refinement (no learning)"),
    "classical-nlm": (NonLocalMeansDenoiser,
                      "non-local-means denoising, noise level estimated per image (scikit-image)"),
    "classical-dcp+nlm": (lambda: ClassicalPipeline(DarkChannelPriorDehazer(),
                                                    NonLocalMeansDenoiser()),
                          "dark-channel-prior dehazing, then non-local-means denoising"),
}


def list_classical() -> list[str]:
    """Names accepted by :func:`create_classical`."""
    return list(CLASSICAL_METHODS)


def is_classical(name: str) -> bool:
    return name in CLASSICAL_METHODS


def create_classical(name: str) -> nn.Module:
    """Build a classical method: ``classical-dcp``, ``classical-nlm`` or ``classical-dcp+nlm``."""
    if name not in CLASSICAL_METHODS:
        raise KeyError(
            f"unknown classical method {name!r}; choose one of {list_classical()}."
            + closest_match_hint(name, list_classical())
        )
    module = CLASSICAL_METHODS[name][0]()
    return module.eval()
