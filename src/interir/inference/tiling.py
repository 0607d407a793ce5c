"""Overlapping tiles with smooth blending, so any image size restores in bounded memory.

A tile grid covers an ``H x W`` image with the fewest tiles of at most ``tile x tile`` pixels
(give or take ``multiple - 1`` for the last row and column) that overlap their neighbours by at
least ``overlap`` pixels. The tiles along an axis have one size and are spread evenly, so no thin
sliver tile is left at the border, and they start at multiples of the network's down-sampling
factor: a network that pixel-unshuffles its input by ``s`` then sees every tile in the same
``s x s`` phase as the whole image (a tile shifted by a fraction of a block would be a different
input to it).

Each tile's output is weighted by a separable raised-cosine window before it is added into the
full-size result. Along an axis the window rises as ``sin^2`` over the pixels shared with the
previous tile and falls as ``cos^2`` over the pixels shared with the next one, and it is 1 elsewhere
and at the image border. Where two tiles overlap, their weights therefore sum to exactly 1 and the
result fades from one tile into the other, with no visible seam. The sum of the weights is
tracked and divided out anyway, which keeps the blend exact for any overlap pattern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

__all__ = ["TileGrid", "auto_overlap", "axis_tiles", "plan_tiles", "blend_window", "tiled_apply"]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def axis_tiles(
    length: int, tile: int, overlap: int, multiple: int = 1
) -> tuple[tuple[int, int], ...]:
    """Tiles along one axis, as ``(start, size)`` pairs.

    Args:
        length: image size along the axis (pixels), >= 1.
        tile: largest tile size wanted (rounded down to ``multiple``).
        overlap: smallest overlap between neighbouring tiles, ``0 <= overlap < tile``.
        multiple: every tile starts at a multiple of this (the network's down-sampling factor),
            so each tile sees the same pixel-unshuffle phase as the whole image would; and every
            tile but the last has a size that is a multiple of it.

    Returns:
        ``((start, size), ...)`` with the first tile starting at 0 and the last one ending at
        ``length``; ``((0, length),)`` when ``length <= tile``. All tiles share one size except
        the last, which may be up to ``multiple - 1`` pixels longer so that it ends at the border.
    """
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    tile = max(multiple, (tile // multiple) * multiple)
    if length <= tile:
        return ((0, length),)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap} with tile={tile}")
    # Aligning starts down to `multiple` can cost up to multiple - 1 pixels of overlap.
    need = min(overlap + multiple - 1, tile - multiple)
    count = math.ceil((length - need) / (tile - need))
    # The smallest common size giving `count` tiles with at least `need` shared pixels.
    size = min(tile, _ceil_to(math.ceil((length + (count - 1) * need) / count), multiple))
    span = length - size
    starts = [(round(i * span / (count - 1)) // multiple) * multiple for i in range(count)]
    tiles = [(start, size) for start in starts[:-1]]
    tiles.append((starts[-1], length - starts[-1]))
    return tuple(tiles)


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of an image are.

    Attributes:
        height, width: image size.
        rows, cols: ``(start, size)`` of the tiles along each axis (see :func:`axis_tiles`).
    """

    height: int
    width: int
    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.rows) * len(self.cols)

    @property
    def tile_size(self) -> tuple[int, int]:
        """``(height, width)`` of the first (largest but for the last row/column) tile."""
        return self.rows[0][1], self.cols[0][1]

    def __iter__(self) -> Iterator[tuple[int, int, slice, slice]]:
        """Yield ``(row_index, col_index, row_slice, col_slice)`` for every tile, row by row."""
        for i, (top, tile_h) in enumerate(self.rows):
            for j, (left, tile_w) in enumerate(self.cols):
                yield i, j, slice(top, top + tile_h), slice(left, left + tile_w)

    @property
    def pixels_processed(self) -> int:
        """Pixels the network sees in total (>= ``height * width`` because of the overlaps)."""
        return sum(h for _, h in self.rows) * sum(w for _, w in self.cols)


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> TileGrid:
    """Plan a tile grid for an ``height x width`` image (see :func:`axis_tiles`)."""
    rows = axis_tiles(height, tile, overlap, multiple)
    cols = axis_tiles(width, tile, overlap, multiple)
    return TileGrid(height, width, rows, cols)


def _ramp(length: int, device, dtype) -> torch.Tensor:
    """``sin^2`` ramp from ~0 to ~1 over ``length`` samples, never exactly 0."""
    positions = (torch.arange(length, device=device, dtype=torch.float64) + 0.5) / length
    return torch.sin(positions * (math.pi / 2)).pow(2).to(dtype)


def blend_window(size: int, rise: int, fall: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """1-D raised-cosine window of ``size`` samples.

    Args:
        size: window length.
        rise: samples shared with the previous tile (0 at the image border): the window rises
            over them.
        fall: samples shared with the next tile: the window falls over them.

    Returns:
        ``(size,)`` weights in (0, 1]. A rise over ``n`` samples and a fall over the same ``n``
        samples of the neighbouring tile sum to exactly 1.
    """
    window = torch.ones(size, device=device, dtype=dtype)
    rise, fall = min(rise, size), min(fall, size)
    if rise > 0:
        window[:rise] = _ramp(rise, device, dtype)
    if fall > 0:
        window[size - fall :] *= _ramp(fall, device, dtype).flip(0)
    return window


def _axis_windows(tiles: tuple[tuple[int, int], ...], device, dtype) -> list[torch.Tensor]:
    windows = []
    for k, (start, size) in enumerate(tiles):
        rise = tiles[k - 1][0] + tiles[k - 1][1] - start if k > 0 else 0
        fall = start + size - tiles[k + 1][0] if k + 1 < len(tiles) else 0
        windows.append(blend_window(size, max(rise, 0), max(fall, 0), device, dtype))
    return windows


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply a size-preserving image function tile by tile and blend the tiles smoothly.

    Args:
        fn: maps a ``(B, C, h, w)`` tile to a ``(B, C_out, h, w)`` result (it may run on another
            device; results are brought back to ``image``'s device).
        image: ``(B, C, H, W)`` tensor.
        tile: largest tile side in pixels.
        overlap: smallest overlap between neighbouring tiles in pixels (``< tile``).
        multiple: tile sides are multiples of this unless one tile covers the whole axis.
        progress: called as ``progress(done, total)`` after each tile.

    Returns:
        ``(B, C_out, H, W)`` float32 tensor on ``image``'s device: the weighted average of the
        tile outputs covering each pixel. With a single tile this is exactly ``fn(image)``.
    """
    if image.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    grid = plan_tiles(height, width, tile, overlap, multiple)
    if grid.count == 1:
        out = fn(image).to(image.device, torch.float32)
        if progress is not None:
            progress(1, 1)
        return out
    device = image.device
    row_windows = _axis_windows(grid.rows, device, torch.float32)
    col_windows = _axis_windows(grid.cols, device, torch.float32)
    output: torch.Tensor | None = None
    weight_sum = torch.zeros(height, width, device=device, dtype=torch.float32)
    done = 0
    for i, j, rows, cols in grid:
        result = fn(image[:, :, rows, cols]).to(device, torch.float32)
        if output is None:
            output = torch.zeros(image.shape[0], result.shape[1], height, width, device=device)
        window = row_windows[i][:, None] * col_windows[j][None, :]
        output[:, :, rows, cols].add_(result * window)
        weight_sum[rows, cols].add_(window)
        done += 1
        if progress is not None:
            progress(done, grid.count)
    assert output is not None
    return output.div_(weight_sum)


def auto_overlap(tile: int, multiple: int = 1) -> int:
    """Default overlap for a tile side: 1/8 of it, 16 to 64 pixels, a multiple of ``multiple``."""
    overlap = min(64, max(16, tile // 8))
    overlap = -(-overlap // multiple) * multiple
    return min(overlap, max(0, tile // 2))
