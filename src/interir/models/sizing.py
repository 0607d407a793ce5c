"""What a network needs of its input's size, read from the built model (no building, no loading).

- :func:`size_multiple`: the factor the model pads its input to (InterIR: ``downsample``;
  NAFNet: ``2 ** levels``), so tiles and exported graphs use sides that are multiples of it.
- :func:`minimum_size`: the smallest height and width the model accepts.
- :func:`auto_tile_size`: [ours] the largest tile side :func:`interir.inference.restore_tensor`
  uses by default, 128 x the down-sampling factor (512 px without one).
- :func:`needs_whole_image`: the model must see the whole image at once, never tiles (a model
  declaring ``whole_image = True``, e.g. the classical methods of :mod:`interir.classical`).

Used by :mod:`interir.inference` (padding and tiling) and :mod:`interir.export` (example inputs
and dynamic shapes). Reads attributes only; imports torch alone.
"""

from __future__ import annotations

from torch import nn

__all__ = ["AUTO_TILE_FALLBACK", "AUTO_WORKING_SIZE", "auto_tile_size", "minimum_size",
           "needs_whole_image", "size_multiple"]

#: Working resolution (pixels per side after the model's down-sampling) of an automatic tile.
AUTO_WORKING_SIZE = 128
#: Automatic tile side for models without a down-sampling factor (e.g. NAFNet).
AUTO_TILE_FALLBACK = 512


def size_multiple(model: nn.Module) -> int:
    """The factor the model pads its input to (InterIR: ``downsample``; NAFNet: 2^levels)."""
    config = getattr(model, "config", None)
    value = getattr(config, "downsample", None) or getattr(model, "multiple", None) or 1
    return max(1, int(value))


def minimum_size(model: nn.Module) -> int:
    """Smallest height and width the model accepts (``model.min_size``, else 1)."""
    return max(1, int(getattr(model, "min_size", 1) or 1))


def auto_tile_size(model: nn.Module) -> int:
    """Default largest tile side: 128 x the model's down-sampling factor (512 when it has none).

    For InterIR that bounds the Kronecker factors at 128 x 128 per tile, so the multiply-adds of
    their matrix products per pixel stay constant whatever the image size.
    """
    config = getattr(model, "config", None)
    downsample = getattr(config, "downsample", None)
    if downsample:
        return AUTO_WORKING_SIZE * int(downsample)
    return AUTO_TILE_FALLBACK


def needs_whole_image(model: nn.Module) -> bool:
    """True when the model must see the whole image at once (``model.whole_image``, else False):
    its result depends on statistics of the whole image, so tiles would disagree."""
    return bool(getattr(model, "whole_image", False))
