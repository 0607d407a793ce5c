"""Inference: restore tensors, files and folders of any size (tiling, padding, OOM retry).

Public API:
    restore_tensor(model, image, tile=None, overlap=None, device=None)
        (3, H, W) or (B, 3, H, W) in [0, 1] -> same shape, clamped to [0, 1]
    restore_file(src, dst, model, overwrite=False, ...)       one file -> (path, note)
    restore_paths(inputs, out_dir, model, overwrite=False, ...)  files/folders -> RestoreReport
    load_restoration_model(spec="default", device="auto")     checkpoint / name / "default"
    plan_tiles(height, width, tile, overlap, multiple)        the tile grid
    tiled_apply(fn, image, tile, overlap, multiple)           blend any function over tiles
"""

from interir.inference.restore import (
    OUTPUT_FORMATS,
    OutputExistsError,
    RestoreReport,
    auto_overlap,
    auto_tile_size,
    load_restoration_model,
    minimum_size,
    plan_outputs,
    restore_file,
    restore_paths,
    restore_tensor,
    size_multiple,
)
from interir.inference.tiling import TileGrid, axis_tiles, blend_window, plan_tiles, tiled_apply

__all__ = [
    "OUTPUT_FORMATS",
    "OutputExistsError",
    "RestoreReport",
    "TileGrid",
    "auto_overlap",
    "auto_tile_size",
    "axis_tiles",
    "blend_window",
    "load_restoration_model",
    "minimum_size",
    "plan_outputs",
    "plan_tiles",
    "restore_file",
    "restore_paths",
    "restore_tensor",
    "size_multiple",
    "tiled_apply",
]
