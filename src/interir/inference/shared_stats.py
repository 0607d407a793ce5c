"""Whole-image statistics shared by every tile of a tiled restoration (no seams between tiles).

Some layers reduce their whole input to a few numbers that then modulate every pixel:

- channel attention's global average pool (SCA of EPBlock/NAFBlock: a
  :class:`~interir.models.layers.WindowedMeanPool` with ``window == 0``; DeepSN-Net's and
  InterIR's pooled weights: ``nn.AdaptiveAvgPool2d(1)``),
- the explainable convolution's kernel attention (its mask pooled to ``k x k`` regions of the
  whole map, :meth:`~interir.models.explainable_conv.ExplainableConv2d.input_attention`; a tile
  that replays it computes no mask),
- InterIR's airlight statistics (:class:`~interir.models.unfolding.GlobalStatistics`).

Run tile by tile, each tile computes them from its own content: a tile of sky and a tile of
trees get different channel gains, and where they meet the blend fades between two differently
coloured restorations, a visible seam however wide the overlap (issue 30: a grey rectangle over a
third of a rainy photo). Here the whole image's values are computed once and every tile reuses
them, so each tile is restored as a piece of the whole image would be:

1. :func:`record_statistics` runs the model once on the whole image, downscaled so that it fits
   in one tile (the cost of one more tile), and records every such layer's output in call order;
2. inside :func:`sharing_statistics` those layers return the recorded values instead of their own.

The recorded values have no spatial size (``(B, C, 1, 1)`` or ``(B, C, k, k)``), so they fit
tiles of any size. Layers whose result depends on the map's size (InterIR's Kronecker factors,
windowed means with ``window > 0``) stay per tile: they are local by construction or cannot be
shared. Downscaling changes the statistics: texture gets finer per pixel and noise is averaged
away: on photos that costs far less than sharing gains, on pure noise it is worse than per-tile
statistics (the measured figures are in docs/inference.md and benchmarks/results/tile_seams.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from interir.models.explainable_conv import ExplainableConv2d
from interir.models.layers import WindowedMeanPool
from interir.models.unfolding import GlobalStatistics

__all__ = ["global_layers", "record_statistics", "sharing_statistics", "downscale_to_fit", "SharedStatistics"]

#: Recorded outputs per ``(module, method name)``, in call order within one forward pass.
SharedStatistics = dict[tuple[nn.Module, str], list[torch.Tensor]]


def global_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, method name)`` of every layer of ``model`` that reduces the whole map.

    The method is ``"forward"`` for pools and ``"input_attention"`` for explainable convs.
    Windowed means with ``window > 0`` are local and are not listed.
    """
    found: list[tuple[nn.Module, str]] = []
    for module in model.modules():
        if isinstance(module, WindowedMeanPool) and module.window == 0:
            found.append((module, "forward"))
        elif isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1)):
            found.append((module, "forward"))
        elif isinstance(module, GlobalStatistics):
            found.append((module, "forward"))
        elif isinstance(module, ExplainableConv2d):
            found.append((module, "input_attention"))
    return found


@contextmanager
def _patched(layers: list[tuple[nn.Module, str]], make: Callable) -> Iterator[None]:
    """Replace each layer's method on the instance by ``make(module, name, original)``, then
    put the class's method back (instance attributes shadow class methods)."""
    patched = []
    try:
        for module, name in layers:
            original = getattr(module, name)
            object.__setattr__(module, name, make(module, name, original))
            patched.append((module, name))
        yield
    finally:
        for module, name in patched:
            module.__dict__.pop(name, None)


def downscale_to_fit(image: torch.Tensor, side: int, multiple: int = 1) -> torch.Tensor:
    """``(B, C, H, W)`` image resized (antialiased) so that its longer side is at most ``side``.

    The aspect ratio is kept and each side stays at least ``multiple`` pixels; an image that
    already fits is returned as it is.
    """
    height, width = image.shape[-2:]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(multiple, round(height * scale)), max(multiple, round(width * scale)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def record_statistics(
    model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor
) -> SharedStatistics:
    """Run ``run(image)`` once and record what each of :func:`global_layers` returned.

    Args:
        model: the network ``run`` calls.
        run: one forward pass of the model (padding, precision, device handled by it).
        image: ``(B, 3, H, W)`` whole image, usually :func:`downscale_to_fit` to a tile.

    Returns:
        ``{(module, name): [output, ...]}``, one entry per call during the pass (empty lists for
        layers the pass did not reach).
    """
    layers = global_layers(model)
    recorded: SharedStatistics = {key: [] for key in layers}

    def make(module, name, original):
        def recording(*args, **kwargs):
            out = original(*args, **kwargs)
            recorded[(module, name)].append(out)
            return out
        return recording

    with _patched(layers, make):
        run(image)
    return recorded


@contextmanager
def sharing_statistics(statistics: SharedStatistics) -> Iterator[None]:
    """Within the block, every recorded layer returns its recorded outputs, in call order.

    The k-th call of a layer in a forward pass gets the k-th recorded output (call counts wrap
    around per pass, so every tile sees the same sequence). Layers not called during the
    recording keep computing their own values.
    """
    calls = {key: 0 for key in statistics}
    layers = [key for key, values in statistics.items() if values]

    def make(module, name, original):
        values = statistics[(module, name)]

        def replaying(*args, **kwargs):
            index = calls[(module, name)] % len(values)
            calls[(module, name)] += 1
            return values[index]
        return replaying

    with _patched(layers, make):
        yield
