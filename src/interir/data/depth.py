"""Clean images with real depth, for haze that follows the scene ([ours]).

:class:`DepthImageDataset` reads views with a disparity map (the Middlebury stereo layout) and
turns the disparity into a depth map in the haze model's units: ``d ~ 1 / disparity``, unknown
disparity (0) filled from its neighbours (:func:`fill_unknown`), and the far end of the scene
(its 99th depth percentile) put at :data:`REAL_DEPTH_FAR`, the far end of the pseudo-depth. So
``t = exp(-beta d)`` hazes near objects less than far ones by the scene's own depth ratio, as
RESIDE hazed NYU-Depth images for SOTS; a haze level means the same thickness at the far wall as
it does at the pseudo-depth's centre. The training mix cuts aligned patches from image and depth
(:class:`interir.data.mixing.MixedPatches`).

Layout, one folder per scene (sub-folders of ``root``; files directly in ``root`` work too): a
disparity file is one whose name starts with ``disp`` or ``truedisp``. A folder with one image
and one disparity file pairs them (``view.png`` + ``disp.png``, Tsukuba's
``scene1.row3.col3.ppm`` + ``truedisp.row3.col3.pgm``); otherwise an image ``<letters><k>`` pairs
with ``disp<k>`` (``view1.png`` + ``disp1.png``, Teddy's ``im2.png`` + ``disp2.png``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from interir.utils.io import IMAGE_EXTENSIONS, read_image

__all__ = ["DepthImageDataset", "find_depth_pairs", "fill_unknown", "depth_from_disparity",
           "REAL_DEPTH_FAR"]

#: Depth given to a scene's far end (99th percentile), in the pseudo-depth's units (0-16).
REAL_DEPTH_FAR = 16.0
#: Extensions read besides :data:`IMAGE_EXTENSIONS` (Tsukuba's netpbm files).
_EXTRA_EXTENSIONS = (".ppm", ".pgm")
_DISPARITY = re.compile(r"^(true)?disp", re.IGNORECASE)


def _images_in(folder: Path) -> list[Path]:
    exts = IMAGE_EXTENSIONS + _EXTRA_EXTENSIONS
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))


def _index(stem: str) -> str | None:
    """The view index of ``view1`` / ``im2`` / ``disp5``: the digits after the leading letters."""
    m = re.match(r"^[A-Za-z]+(\d+)$", stem)
    return m.group(1) if m else None


def _pairs_in(folder: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    files = _images_in(folder)
    disp = [p for p in files if _DISPARITY.match(p.name)]
    views = [p for p in files if p not in disp]
    if len(views) == 1 and len(disp) == 1:
        return [(views[0], disp[0])], []
    by_index = {_index(p.stem[len("true"):] if p.stem.lower().startswith("true") else p.stem): p
                for p in disp}
    pairs, problems = [], []
    for v in views:
        d = by_index.get(_index(v.stem)) if _index(v.stem) is not None else None
        if d is None:
            problems.append(f"{v}: no disparity file disp<k> for it")
        else:
            pairs.append((v, d))
    return pairs, problems


def find_depth_pairs(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(image, disparity)`` pairs under ``root`` (itself and its sub-folders), sorted.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: an image without a disparity file, or no pair at all (one error listing all).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"depth folder '{root}' does not exist; check data.depth_roots")
    pairs, problems = [], []
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        if not _images_in(folder):
            continue
        found, bad = _pairs_in(folder)
        pairs += found
        problems += bad
    if not pairs and not problems:
        problems.append(f"no image with a disparity map (disp*.png) under {root}")
    if problems:
        raise ValueError(f"depth folder '{root}' has {len(problems)} problem(s):\n  "
                         + "\n  ".join(problems)
                         + "\nFix: name each disparity map disp<k> beside its view<k> (or im<k>).")
    return pairs


def fill_unknown(disparity: torch.Tensor, max_steps: int | None = None) -> torch.Tensor:
    """Fill unknown (zero) disparity from the nearest known pixels.

    Each step gives every unknown pixel next to a known one (3x3) the *smallest* known disparity
    around it, i.e. the farthest neighbour: unknown stereo disparity is mostly occluded
    background beside a near object's edge, which belongs to the far side.

    Args:
        disparity: ``(H, W)`` disparity, 0 where unknown, >= 0 elsewhere.
        max_steps: at most this many growing steps (default ``H + W``: always enough).

    Returns:
        ``(H, W)`` float32 with no zero left (all-zero input raises ``ValueError``).
    """
    d = disparity.float().clone()
    known = d > 0
    if not bool(known.any()):
        raise ValueError("the disparity map has no known (non-zero) pixel; it cannot give depth")
    big = float(d.max()) + 1.0
    for _ in range(max_steps or sum(d.shape)):
        if bool(known.all()):
            break
        masked = torch.where(known, d, torch.full_like(d, big))
        nearest = -F.max_pool2d(-masked[None, None], 3, stride=1, padding=1)[0, 0]
        grow = ~known & (nearest < big)
        d = torch.where(grow, nearest, d)
        known = known | grow
    return d


def depth_from_disparity(disparity: torch.Tensor, far: float = REAL_DEPTH_FAR) -> torch.Tensor:
    """``(H, W)`` disparity (0 unknown) -> ``(1, H, W)`` depth ``~ 1 / disparity``, filled, with
    its 99th percentile at ``far`` and clamped there (a few stray far pixels stay bounded)."""
    depth = 1.0 / fill_unknown(disparity)
    flat = depth.flatten()
    if flat.numel() > 1_000_000:
        flat = flat[:: flat.numel() // 1_000_000 + 1]
    scale = float(torch.quantile(flat, 0.99))
    return (far * depth / scale).clamp(max=far)[None].contiguous()


class DepthImageDataset(Dataset):
    """Clean views with their depth, from a folder in the Middlebury layout (module docstring).

    Args:
        root: the folder.
        far: depth of the scene's far end (see :func:`depth_from_disparity`).
        exclude: names to leave out: a scene folder (``"Aloe"``, all its views), a view
            (``"Aloe/view1"``) or a file name; e.g. the held-out validation scenes.

    Items: ``{"image": (3, H, W) float32 in [0, 1], "depth": (1, H, W) float32 in (0, far],
    "name": "<scene>/<file stem>"}``. Depth maps are computed on first use and kept (the sets
    are small: 47 Middlebury views hold about 60 MB of depth).
    """

    def __init__(self, root: str | os.PathLike, far: float = REAL_DEPTH_FAR,
                 exclude: set[str] | None = None) -> None:
        self.root = Path(root)
        skip = exclude or set()
        self.pairs = [(v, d) for v, d in find_depth_pairs(self.root)
                      if not {v.parent.name, f"{v.parent.name}/{v.stem}", v.name} & skip]
        if not self.pairs:
            raise ValueError(f"every view under '{root}' is excluded; check data.exclude")
        self.far = float(far)
        self._depth: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        return [f"{v.parent.name}/{v.stem}" for v, _ in self.pairs]

    def depth(self, index: int) -> torch.Tensor:
        """``(1, H, W)`` depth of item ``index`` (cached)."""
        if index not in self._depth:
            self._depth[index] = depth_from_disparity(read_image(self.pairs[index][1]).image[0], self.far)
        return self._depth[index]

    def __getitem__(self, index: int) -> dict:
        image = read_image(self.pairs[index][0]).image
        depth = self.depth(index)
        if depth.shape[-2:] != image.shape[-2:]:
            view, disp = self.pairs[index]
            raise ValueError(f"{view} is {tuple(image.shape[-2:])} but its disparity {disp} is "
                             f"{tuple(depth.shape[-2:])}; both must have the same size")
        return {"image": image, "depth": depth, "name": self.names[index]}
