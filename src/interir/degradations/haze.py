"""Haze by the atmospheric scattering model.

``I = J * t + A * (1 - t)``, ``t = exp(-beta * d(x))``, ``beta = level / 1000`` (level in [0, 150]
in the paper's MDIR set), airlight ``A`` a per-image gray value drawn from U[0.5, 0.9], and ``d``
either a given depth map or the "centre-distance" pseudo-depth

``d(x) = sqrt(R) - 0.04 * R * |x - c| / max(H, W)``  with ``R = 256``,

i.e. the common recipe ``d = -0.04 |x - c| + sqrt(max(H, W))`` evaluated on the image rescaled so
that its longer side is 256 pixels. The rescaling is ours: it makes a level mean the same haze at
every resolution and keeps ``d`` positive (between 8.76 at the corners of a square and 16 at the
centre), whereas the raw recipe goes negative on images larger than about 1000 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interir.degradations.common import as_batch_vector, check_batch

__all__ = [
    "HazeParams",
    "HazeSampling",
    "Haze",
    "pseudo_depth",
    "rescale_depth",
    "sample_haze_params",
    "PSEUDO_DEPTH_REFERENCE",
    "PATCH_DEPTH_MODES",
    "WIDE_DEPTH_RATIO",
    "OUTDOOR_DEPTH_RATIO",
    "OUTDOOR_FAR",
    "SKY_DEPTH_FACTOR",
    "patch_depth",
    "sky_mask",
]

#: Reference longer side (pixels) at which the centre-distance recipe is evaluated.
PSEUDO_DEPTH_REFERENCE = 256


@dataclass
class HazeParams:
    """Per-image haze parameters.

    Attributes:
        level: ``(B,)`` haze level, ``beta = level / 1000``; 0 means no haze.
        airlight: ``(B,)`` gray airlight A in [0, 1].
    """

    level: torch.Tensor
    airlight: torch.Tensor

    @property
    def beta(self) -> torch.Tensor:
        """``(B,)`` scattering coefficient ``level / 1000``."""
        return self.level / 1000.0

    def to(self, device) -> "HazeParams":
        return HazeParams(self.level.to(device), self.airlight.to(device))

    def select(self, idx: torch.Tensor) -> "HazeParams":
        return HazeParams(self.level[idx], self.airlight[idx])


@dataclass(frozen=True)
class HazeSampling:
    """Ranges from which the haze sub-parameters are drawn (uniformly).

    Attributes:
        airlight: range of the gray airlight A.
    """

    airlight: tuple[float, float] = (0.5, 0.9)


def sample_haze_params(
    levels: torch.Tensor, generator: torch.Generator, sampling: HazeSampling = HazeSampling()
) -> HazeParams:
    """Draw the haze sub-parameters for given levels.

    Args:
        levels: ``(B,)`` haze levels (on the generator's device).
        generator: seeded generator; one draw of B values is consumed.
        sampling: sub-parameter ranges.
    """
    b = levels.shape[0]
    lo, hi = sampling.airlight
    u = torch.rand(b, generator=generator, device=levels.device)
    return HazeParams(level=levels.float(), airlight=(lo + (hi - lo) * u).float())


def pseudo_depth(
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    reference: int = PSEUDO_DEPTH_REFERENCE,
) -> torch.Tensor:
    """Centre-distance pseudo-depth, largest (farthest) at the image centre.

    Returns:
        ``(1, 1, H, W)`` depth, ``sqrt(R) - 0.04 * R * r / max(H, W)`` with ``r`` the pixel
        distance to the centre and ``R = reference``.
    """
    ys = torch.arange(height, device=device, dtype=torch.float64) - (height - 1) / 2.0
    xs = torch.arange(width, device=device, dtype=torch.float64) - (width - 1) / 2.0
    r = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return _centre_distance(r, max(height, width), reference).to(dtype)[None, None]


def _centre_distance(r: torch.Tensor, longest, reference: int) -> torch.Tensor:
    """The recipe ``sqrt(R) - 0.04 R r / longest`` (clamped at 0) for distances ``r`` to the centre."""
    return (reference**0.5 - 0.04 * reference * r / longest).clamp_min(0.0)


def rescale_depth(
    depth: torch.Tensor, near: float | torch.Tensor = 8.0, far: float | torch.Tensor = 16.0
) -> torch.Tensor:
    """Map each depth map of a batch linearly to [near, far] (the pseudo-depth's range).

    A real depth map (metres, disparity-free, larger = farther) has arbitrary units; rescaling it
    keeps the meaning of the haze level comparable with the pseudo-depth.

    Args:
        depth: ``(B, 1, H, W)`` depth, larger values farther away.
        near, far: target range, numbers or ``(B, 1, 1, 1)`` tensors (one range per image).
    """
    flat = depth.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = (hi - lo).clamp_min(1e-12)
    return near + (far - near) * (depth - lo) / span


#: How training patches get their haze depth (see :func:`patch_depth`).
PATCH_DEPTH_MODES = (
    "centre", "crop", "mixed", "scene", "wide", "scene-wide", "outdoor", "scene-wide-outdoor",
)
#: Range of far/near depth of the ``"wide"`` mode ([ours]): SOTS-indoor's optical depth spans a
#: 90th/10th percentile ratio of 2.5-17 (median 3.9), ours 1.1-1.5 before (docs/degradations.md).
WIDE_DEPTH_RATIO = (5.0, 50.0)


def _crop_of_pseudo_depth(
    n: int, height: int, width: int, generator: torch.Generator, reference: int
) -> torch.Tensor:
    """``(n, 1, H, W)``: each a window of the pseudo-depth of a larger, randomly sized image."""
    gdev = generator.device
    u = torch.rand(n, 4, generator=generator, device=gdev, dtype=torch.float64).cpu()
    longest = max(height, width)
    # A virtual source image 2-8x the patch's size, landscape or portrait with aspect 0.6-1.
    big = longest * (2.0 + 6.0 * u[:, 0])
    small = torch.maximum(big * (0.6 + 0.4 * u[:, 1]), torch.full_like(big, float(longest)))
    portrait = u[:, 2] < 0.5
    full_h = torch.where(portrait, big, small)
    full_w = torch.where(portrait, small, big)
    # Window offsets: reuse the last uniform for y, and its fractional double for x.
    oy = (full_h - height) * u[:, 3]
    ox = (full_w - width) * torch.frac(u[:, 3] * 997.0)
    ys = oy[:, None] + torch.arange(height, dtype=torch.float64)[None] - (full_h[:, None] - 1) / 2.0
    xs = ox[:, None] + torch.arange(width, dtype=torch.float64)[None] - (full_w[:, None] - 1) / 2.0
    r = torch.sqrt(ys[:, :, None] ** 2 + xs[:, None, :] ** 2)
    return _centre_distance(r, torch.maximum(full_h, full_w)[:, None, None], reference)[:, None]


def _smooth_random_field(
    n: int, height: int, width: int, generator: torch.Generator, wide: bool = False
):
    """A smooth random field (a 3x3 grid of values plus a ramp) and a random near/far range.

    Args:
        wide: draw the range as real indoor depth has it ([ours], measured on SOTS-indoor in
            ``docs/degradations.md``): far in [12, 16] and far/near log-uniform in
            [WIDE_DEPTH_RATIO]; otherwise near in [6, 12] and far at most 16 (the same draws).

    Returns:
        ``(field, near, far)``: ``(n, 1, H, W)`` float64 in arbitrary units, and ``(n, 1, 1, 1)``
        ranges inside [6, 16] (``wide``: [0.24, 16]), the pseudo-depth's units.
    """
    gdev = generator.device
    grid = torch.rand(n, 1, 3, 3, generator=generator, device=gdev, dtype=torch.float64).cpu()
    u = torch.rand(n, 4, generator=generator, device=gdev, dtype=torch.float64).cpu()
    field = torch.nn.functional.interpolate(grid, size=(height, width), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float64).view(1, 1, height, 1)
    xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float64).view(1, 1, 1, width)
    field = field + (2 * u[:, 0] - 1).view(-1, 1, 1, 1) * ys + (2 * u[:, 1] - 1).view(-1, 1, 1, 1) * xs
    if wide:
        far = 12.0 + 4.0 * u[:, 3]
        lo, hi = (math.log(r) for r in WIDE_DEPTH_RATIO)
        near = far / torch.exp(lo + (hi - lo) * u[:, 2])
    else:
        near = 6.0 + 6.0 * u[:, 2]
        far = torch.minimum(near + 1.0 + 7.0 * u[:, 3], torch.full_like(near, 16.0))
    return field, near.view(-1, 1, 1, 1), far.view(-1, 1, 1, 1)


def _smooth_random_depth(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, 1, H, W)``: a smooth random field rescaled to a random near/far range in [6, 16]."""
    field, near, far = _smooth_random_field(n, height, width, generator)
    return rescale_depth(field, near, far)


def _unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map each ``(B, 1, H, W)`` map of a batch linearly to [0, 1]."""
    return rescale_depth(x, 0.0, 1.0)


def _scene_depth(
    n: int, height: int, width: int, generator: torch.Generator, clean: torch.Tensor | None, rows,
    wide: bool = False,
) -> torch.Tensor:
    """``(len(rows), 1, H, W)``: smooth random fields given edges where the clean patches have them.

    Real depth (as in RESIDE's SOTS) jumps at object boundaries, which are also colour edges; a
    smooth field alone never shows the network a haze density that changes at an edge. Each field
    is blended with a lightly blurred random colour projection of its clean patch (weight drawn in
    [0, 1], sign random: bright regions may be near or far), then rescaled to the field's range.
    All draws are made for the ``n`` images of the batch; ``rows`` picks the ones ``clean`` holds.
    ``wide`` draws the near/far range of real indoor depth (see :func:`_smooth_random_field`) and
    maps the blend to it geometrically, so that the optical depth's 90th/10th percentile ratio
    reaches real depth's (a linear map keeps it below about 4 whatever the range).
    """
    if clean is None:
        raise ValueError("haze depth modes 'scene' and 'wide' need the clean patches (clean=...)")
    field, near, far = _smooth_random_field(n, height, width, generator, wide)
    u = torch.rand(n, 5, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    field, near, far, u = field[rows], near[rows], far[rows], u[rows]
    if clean.ndim != 4 or clean.shape[0] != len(u) or clean.shape[-2:] != (height, width):
        raise ValueError(
            f"clean must have shape ({len(u)}, C, {height}, {width}), got {tuple(clean.shape)}"
        )
    colour = u[:, :3] + 0.05
    colour = (colour / colour.sum(dim=1, keepdim=True)).view(-1, 3, 1, 1)
    rgb = clean.detach().to("cpu", torch.float64).expand(-1, 3, -1, -1)
    projection = (rgb * colour).sum(dim=1, keepdim=True)
    # A 5x5 mean keeps object-scale structure and drops fine texture (depth has no texture).
    projection = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(projection, (2, 2, 2, 2), mode="replicate"), 5, stride=1
    )
    sign = torch.where(u[:, 3] < 0.5, -1.0, 1.0).view(-1, 1, 1, 1)
    weight = u[:, 4].view(-1, 1, 1, 1)
    blended = (1 - weight) * _unit_range(field) + weight * _unit_range(sign * projection)
    if wide:  # geometric: as much room between 1 m and 2 m as between 4 m and 8 m
        return near * (far / near) ** _unit_range(blended)
    return rescale_depth(blended, near, far)


def sky_mask(clean: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` bool: the sky of clean photos, by a cheap rule ([ours]).

    A pixel is sky when it is bright (luma above 0.4), smooth (standard deviation of its 7x7
    neighbourhood below 0.06), not warm (blue at least red minus 0.05: blue, gray or white), and
    every pixel above it in its column is too (sky is what the top of a photo reaches without
    crossing an object). Sunsets and skies cut off by the patch's top edge are missed; a white
    wall touching the top is taken for sky, which costs little: it is hazed as far away.

    Args:
        clean: ``(B, C, H, W)`` images in [0, 1], C in {1, 3}.
    """
    rgb = clean.detach().to("cpu", torch.float64).expand(-1, 3, -1, -1)
    luma = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    padded = torch.nn.functional.pad(luma, (3, 3, 3, 3), mode="replicate")
    mean = torch.nn.functional.avg_pool2d(padded, 7, stride=1)
    var = torch.nn.functional.avg_pool2d(padded**2, 7, stride=1) - mean**2
    candidate = (luma > 0.4) & (var < 0.06**2) & (rgb[:, 2:] >= rgb[:, :1] - 0.05)
    # A 3x3 majority removes single-pixel holes (a bird, a JPEG block) before the column rule.
    candidate = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(candidate.double(), (1, 1, 1, 1), mode="replicate"), 3, stride=1
    ) > 0.5
    return torch.cummin(candidate.to(torch.uint8), dim=2).values.bool()


#: Depth of the sky relative to the farthest ground of an ``"outdoor"`` map ([ours]): a range,
#: drawn per image. Far enough that dense haze turns the sky into the airlight, as it does.
SKY_DEPTH_FACTOR = (1.15, 1.4)

#: Ranges of an ``"outdoor"`` map's ground ([ours]): its far end (uniform, the pseudo-depth's
#: units) and its far/near ratio (log-uniform). SOTS-outdoor's optical depth spans a 90th/10th
#: percentile ratio of 1.4-2.3 (median 1.7), narrower than indoor depth's, and its median
#: transmission is 0.61 (docs/degradations.md, "Outdoor haze with sky").
OUTDOOR_FAR = (7.0, 11.0)
OUTDOOR_DEPTH_RATIO = (1.3, 4.0)


def _outdoor_depth(
    n: int, height: int, width: int, generator: torch.Generator, clean: torch.Tensor | None, rows
) -> torch.Tensor:
    """``(len(rows), 1, H, W)``: outdoor depth, ground receding toward the top, sky farther ([ours]).

    Outdoor haze (RESIDE's SOTS-outdoor) differs from indoor haze in two ways that no other mode
    shows: depth grows toward the horizon, and the sky, at the far end, turns into the airlight.
    The ground is a blend of a top-to-bottom ramp (weight 0.5-0.9) and a smooth random field,
    mapped geometrically onto its own near/far range; the sky of the clean patch
    (:func:`sky_mask`) is put at ``far`` times a factor drawn in :data:`SKY_DEPTH_FACTOR`. The
    ground's far end is drawn in :data:`OUTDOOR_FAR`, its far/near ratio in
    :data:`OUTDOOR_DEPTH_RATIO`.
    """
    if clean is None:
        raise ValueError("haze depth mode 'outdoor' needs the clean patches (clean=...)")
    field, _, _ = _smooth_random_field(n, height, width, generator, wide=True)  # its range unused
    u = torch.rand(n, 4, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    far = (OUTDOOR_FAR[0] + (OUTDOOR_FAR[1] - OUTDOOR_FAR[0]) * u[:, 3]).view(-1, 1, 1, 1)
    lo, hi = (math.log(r) for r in OUTDOOR_DEPTH_RATIO)
    near = far / torch.exp(lo + (hi - lo) * u[:, 2]).view(-1, 1, 1, 1)
    field, near, far, u = field[rows], near[rows], far[rows], u[rows]
    if clean.ndim != 4 or clean.shape[0] != len(u) or clean.shape[-2:] != (height, width):
        raise ValueError(
            f"clean must have shape ({len(u)}, C, {height}, {width}), got {tuple(clean.shape)}"
        )
    ramp = torch.linspace(1.0, 0.0, height, dtype=torch.float64).view(1, 1, height, 1)
    weight = (0.5 + 0.4 * u[:, 0]).view(-1, 1, 1, 1)
    ground = near * (far / near) ** _unit_range(weight * ramp + (1 - weight) * _unit_range(field))
    lo, hi = SKY_DEPTH_FACTOR
    sky_depth = far * (lo + (hi - lo) * u[:, 1]).view(-1, 1, 1, 1)
    return torch.where(sky_mask(clean), sky_depth, ground)


def patch_depth(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    mode: str = "centre",
    reference: int = PSEUDO_DEPTH_REFERENCE,
    clean: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
) -> torch.Tensor | None:
    """Depth maps for hazing ``height x width`` training patches.

    The test sets are hazed with the pseudo-depth of the *whole* image, so a 64-pixel window of
    a 481-pixel test image sees almost constant haze; hazing a patch with its own pseudo-depth
    (``"centre"``) instead puts the whole centre-to-corner range inside every patch.

    Args:
        batch: number of patches B.
        height, width: patch size.
        generator: seeded generator; ``"centre"`` draws nothing from it.
        mode: ``"centre"`` -- ``None``, i.e. each patch's own pseudo-depth (the original recipe);
            ``"crop"`` -- a random window of the pseudo-depth of a virtual image 2-8x larger
            (the test sets' statistics); ``"mixed"`` -- half ``"crop"``, half a smooth random
            field (scene-like depth that is not centred, for real haze such as SOTS);
            ``"scene"`` -- half ``"crop"``, half a smooth field blended with the structure of
            the clean patch, so the depth has edges where the scene has (needs ``clean``);
            ``"wide"`` -- every patch such a scene field, over the wide near/far range of real
            indoor depth (:data:`WIDE_DEPTH_RATIO`; needs ``clean``) ([ours]); ``"scene-wide"``
            -- half ``"crop"``, half ``"wide"`` ([ours]: both the test sets' and real haze's depth
            statistics in one training mix); ``"outdoor"`` -- every patch an outdoor depth: the
            ground recedes toward the top and the clean patch's sky is farther still
            (:func:`sky_mask`; needs ``clean``) ([ours]); ``"scene-wide-outdoor"`` -- a third
            each of ``"crop"``, ``"wide"`` and ``"outdoor"`` ([ours]).
        clean: ``(len(rows), C, H, W)`` clean patches in [0, 1]; used by ``"scene"`` only.
        rows: which of the ``batch`` images to return (default all). Every draw is made for the
            whole batch, so a process that holds a slice of a distributed batch gets exactly
            the depths a single process would give those images.

    Returns:
        ``None`` or a ``(len(rows), 1, H, W)`` float32 CPU tensor in the pseudo-depth's units
        (0-16; the sky of ``"outdoor"`` maps up to 11 x 1.4).
    """
    if mode not in PATCH_DEPTH_MODES:
        raise ValueError(f"haze depth mode must be one of {PATCH_DEPTH_MODES}, got {mode!r}")
    if mode == "centre":
        return None
    rows = list(range(batch)) if rows is None else list(rows)
    if mode == "wide":
        return _scene_depth(batch, height, width, generator, clean, rows, wide=True).float()
    if mode == "outdoor":
        return _outdoor_depth(batch, height, width, generator, clean, rows).float()
    if mode == "scene-wide-outdoor":
        return _thirds(batch, height, width, generator, clean, rows, reference)
    depth = _crop_of_pseudo_depth(batch, height, width, generator, reference)
    if mode == "mixed":
        other = _smooth_random_depth(batch, height, width, generator)
    elif mode in ("scene", "scene-wide"):
        other = torch.zeros_like(depth)
        other[rows] = _scene_depth(batch, height, width, generator, clean, rows, wide=mode == "scene-wide")
    if mode in ("mixed", "scene", "scene-wide"):
        pick = torch.rand(batch, generator=generator, device=generator.device).cpu() < 0.5
        depth = torch.where(pick.view(-1, 1, 1, 1), other, depth)
    return depth[rows].float()


def _thirds(batch, height, width, generator, clean, rows, reference) -> torch.Tensor:
    """``"scene-wide-outdoor"``: each patch a ``"crop"``, ``"wide"`` or ``"outdoor"`` depth."""
    depth = _crop_of_pseudo_depth(batch, height, width, generator, reference)
    wide = torch.zeros_like(depth)
    wide[rows] = _scene_depth(batch, height, width, generator, clean, rows, wide=True)
    outdoor = torch.zeros_like(depth)
    outdoor[rows] = _outdoor_depth(batch, height, width, generator, clean, rows)
    pick = (3 * torch.rand(batch, generator=generator, device=generator.device).cpu()).long()
    pick = pick.clamp(max=2).view(-1, 1, 1, 1)
    depth = torch.where(pick == 1, wide, torch.where(pick == 2, outdoor, depth))
    return depth[rows].float()


class Haze(nn.Module):
    """Apply atmospheric-scattering haze with explicit per-image parameters."""

    def forward(
        self, x: torch.Tensor, params: HazeParams, depth: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Haze a batch.

        Args:
            x: ``(B, C, H, W)`` clean images in [0, 1], C in {1, 3}.
            params: per-image level and airlight (``(B,)`` each).
            depth: optional depth ``(B or 1, 1, H, W)`` in the pseudo-depth's units (see
                :func:`rescale_depth`); the centre-distance pseudo-depth when None.

        Returns:
            ``(B, C, H, W)`` hazy images in [0, 1]; exactly ``x`` where the level is 0.
        """
        check_batch(x)
        b, _, h, w = x.shape
        beta = as_batch_vector(params.beta, b, x.device, x.dtype).view(b, 1, 1, 1)
        a = as_batch_vector(params.airlight, b, x.device, x.dtype).view(b, 1, 1, 1)
        if depth is None:
            d = pseudo_depth(h, w, x.device, x.dtype)
        else:
            if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[-2:] != (h, w):
                raise ValueError(
                    f"depth must have shape (B or 1, 1, {h}, {w}), got {tuple(depth.shape)}"
                )
            d = depth.to(x.device, x.dtype)
        t = torch.exp(-beta * d)
        return (x * t + a * (1.0 - t)).clamp(0.0, 1.0)
