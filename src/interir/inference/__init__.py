"""Inference: restore tensors, files and folders of any size (tiling, padding, OOM retry).

Public API:
    restore_tensor(model, image, tile=None, overlap=None, device=None,
                   channels_last=DEFAULT_CHANNELS_LAST, precision=DEFAULT_PRECISION,
                   pool_window=None, backend="torch")
        (3, H, W) or (B, 3, H, W) in [0, 1] -> same shape, float32, clamped to [0, 1]
    PRECISIONS                                                ("auto", "fp32", "bf16")
    BACKENDS                                                  ("torch", "onnx": onnxruntime)
    resolve_precision(precision, device)                      "auto" -> "fp32" or "bf16"
    restore_file(src, dst, model, overwrite=False, ...)       one file -> (path, note)
    restore_paths(inputs, out_dir, model, overwrite=False, ...)  files/folders -> RestoreReport
    plan_tiles(height, width, tile, overlap, multiple)        the tile grid
    tiled_apply(fn, image, tile, overlap, multiple)           blend any function over tiles

Modules, one job each: :mod:`.tensor` (``restore_tensor``: padding, tiling, out-of-memory retry),
:mod:`.settings` (precision and memory format), :mod:`.files` (planning outputs, restoring files
and folders), :mod:`.tiling` (tile grids and blending), :mod:`.shared_stats` (whole-image
statistics shared by tiles), :mod:`.onnx_backend` (the ``onnx`` backend: a cached export run on
onnxruntime). What a model needs of its input's size (``size_multiple``,
``minimum_size``, ``auto_tile_size``) lives with the models, in :mod:`interir.models.sizing`.

Models come from :func:`interir.load_model` (a shipped name, a checkpoint or an architecture);
this layer takes a built model and never loads one.
"""

from interir.inference.files import (
    OUTPUT_FORMATS,
    OutputExistsError,
    RestoreReport,
    plan_outputs,
    restore_file,
    restore_paths,
)
from interir.inference.onnx_backend import BACKENDS, DEFAULT_BACKEND
from interir.inference.settings import (
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    PRECISIONS,
    check_inference_settings,
    cpu_has_native_bf16,
    resolve_precision,
)
from interir.inference.tensor import restore_tensor
from interir.inference.tiling import (
    TileGrid,
    auto_overlap,
    axis_tiles,
    blend_window,
    plan_tiles,
    tiled_apply,
)
from interir.models.sizing import auto_tile_size, minimum_size, size_multiple

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_CHANNELS_LAST",
    "DEFAULT_PRECISION",
    "OUTPUT_FORMATS",
    "PRECISIONS",
    "OutputExistsError",
    "RestoreReport",
    "TileGrid",
    "auto_overlap",
    "auto_tile_size",
    "axis_tiles",
    "blend_window",
    "check_inference_settings",
    "cpu_has_native_bf16",
    "minimum_size",
    "plan_outputs",
    "plan_tiles",
    "restore_file",
    "restore_paths",
    "resolve_precision",
    "restore_tensor",
    "size_multiple",
    "tiled_apply",
]
