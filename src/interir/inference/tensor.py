"""Restore an image tensor of any size: padding, tiling, out-of-memory retry, clamping.

:func:`restore_tensor` runs a model on a ``(3, H, W)`` or ``(B, 3, H, W)`` tensor under
``torch.inference_mode``: images smaller than the model's minimum are padded, large ones are
split into overlapping tiles blended with a raised-cosine window (:mod:`.tiling`), and on an
out-of-memory error the tile is halved and the image retried. The result is clamped to [0, 1].
The model runs under the settings of :mod:`.settings` (precision, memory format, pooling window).

Whole-image statistics (channel attention's global averages, the explainable convs' kernel
attention) are computed once, on the image downscaled to a tile, and shared by every tile
(:mod:`.shared_stats`): tiles computing their own disagreed and left visible seams (issue 30).
InterIR's Kronecker degradation factors still come from each tile, so a tiled restoration is
not bit-identical to an untiled one. The automatic tile size
(:func:`interir.models.sizing.auto_tile_size`) keeps the factors' working resolution at
128 x 128 (512 px tiles for ``downsample=4``), where the difference is small and where the cost
per megapixel stops growing with the image size; the measured figures are in
``docs/inference.md`` and ``benchmarks/results/tile_seams.md``.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from interir.inference.settings import (
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    _autocast,
    _model_settings,
    check_inference_settings,
    resolve_precision,
)
from interir.inference.onnx_backend import (
    DEFAULT_BACKEND,
    OnnxRunner,
    check_backend,
    onnx_runner,
    require_onnxruntime,
)
from interir.inference.shared_stats import (
    downscale_to_fit,
    global_layers,
    record_statistics,
    sharing_statistics,
)
from interir.inference.tiling import auto_overlap, plan_tiles, tiled_apply
from interir.models.explainable_conv import explanations_disabled
from interir.models.sizing import auto_tile_size, minimum_size, needs_whole_image, size_multiple
from interir.utils.device import empty_cache, is_out_of_memory, module_device, resolve_device
from interir.utils.threads import thread_count

__all__ = ["restore_tensor"]

log = logging.getLogger(__name__)


def _run_model(
    model: nn.Module, x: torch.Tensor, device: torch.device, min_size: int,
    channels_last: bool = False, precision: str = "fp32",
) -> torch.Tensor:
    """One forward pass on ``x`` (any device), padded up to ``min_size``; result on ``x``'s
    device, float32 and contiguous whatever ``channels_last`` and ``precision`` are."""
    height, width = x.shape[-2:]
    pad_h, pad_w = max(0, min_size - height), max(0, min_size - width)
    inp = x.to(device, torch.float32, non_blocking=True)
    if pad_h or pad_w:
        inp = F.pad(inp, (0, pad_w, 0, pad_h), mode="replicate")
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    with _autocast(precision, device):
        out = model(inp)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out[..., :height, :width].to(x.device, torch.float32).contiguous()


def _run_onnx(
    runner: OnnxRunner, x: torch.Tensor, min_size: int, statistics: list[torch.Tensor] | None,
) -> torch.Tensor:
    """:func:`_run_model` on onnxruntime (CPU, float32): ``x`` padded up to ``min_size``, the
    result cropped back, on ``x``'s device."""
    height, width = x.shape[-2:]
    pad_h, pad_w = max(0, min_size - height), max(0, min_size - width)
    inp = x.to("cpu", torch.float32)
    if pad_h or pad_w:
        inp = F.pad(inp, (0, pad_w, 0, pad_h), mode="replicate")
    out = runner.run(inp, statistics)
    return out[..., :height, :width].to(x.device).contiguous()


def _out_of_memory_message(device: torch.device, largest: int, height: int, width: int) -> str:
    """What to do when even the smallest tile does not fit: on the CPU, free memory or lift a
    ``ulimit -v``; on a GPU, also the CPU (which has more memory)."""
    fix = ("close other programs, raise the process's memory limit (`ulimit -v`, a container "
           "limit), or restore a smaller or downscaled image" if device.type == "cpu" else
           "free memory on the device, pass a smaller tile, or run with --device cpu")
    return (f"out of memory on {device} even with {largest} px tiles for a {height}x{width} "
            f"image. Fix: {fix}")


def _restore_one(
    model: nn.Module,
    x: torch.Tensor,
    tile: int,
    overlap: int,
    device: torch.device,
    min_tile: int,
    progress: Callable[[int, int], None] | None,
    channels_last: bool = False,
    precision: str = "fp32",
    shared_stats: bool = True,
    runner: OnnxRunner | None = None,
) -> torch.Tensor:
    """Restore one ``(1, 3, H, W)`` image; ``tile == 0`` means the whole image at once.

    With ``shared_stats`` every tile uses the whole image's global statistics
    (:mod:`.shared_stats`), taken from one pass over the image downscaled to a tile. With a
    ``runner`` the image or its tiles run on onnxruntime (the statistics pass in PyTorch).
    """
    height, width = x.shape[-2:]
    multiple = size_multiple(model)
    min_size = minimum_size(model)
    current = tile

    def torch_run(t: torch.Tensor) -> torch.Tensor:
        return _run_model(model, t, device, min_size, channels_last, precision)

    def run(t: torch.Tensor, statistics: list[torch.Tensor] | None = None) -> torch.Tensor:
        if runner is None:
            return torch_run(t)
        return _run_onnx(runner, t, min_size, statistics)

    while True:
        try:
            if current <= 0 or (height <= current and width <= current):
                out = run(x)
                if progress is not None:
                    progress(1, 1)
                return out
            ov = min(overlap, max(0, current // 2))
            return _tiled(model, run, torch_run, x, current, ov, multiple, progress,
                          shared_stats, runner is not None)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
            if not is_out_of_memory(exc):
                raise
            largest = max(height, width) if current <= 0 else min(current, max(height, width))
            smaller = max(multiple, (largest // 2) // multiple * multiple)
            if smaller < min_tile or smaller >= largest:
                raise RuntimeError(_out_of_memory_message(device, largest, height, width)) from exc
            log.warning("out of memory on %s with %s; retrying with %d px tiles", device,
                        "the whole image" if current <= 0 else f"{current} px tiles", smaller)
            current = smaller
        # Outside the except block, so the failed attempt's tensors (held by the traceback) are
        # released before the cache is emptied.
        empty_cache(device)


def _tiled(
    model: nn.Module, run: Callable[..., torch.Tensor],
    torch_run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
    overlap: int, multiple: int, progress: Callable[[int, int], None] | None, shared_stats: bool,
    onnx: bool = False,
) -> torch.Tensor:
    """:func:`tiled_apply` of ``run``, the tiles sharing the whole image's statistics.

    ``torch_run`` runs the statistics pass; with ``onnx`` the recorded values are passed to
    ``run(tile, values)`` (the tile graph's extra inputs) instead of being replayed in PyTorch.
    """
    if (
        not shared_stats or not global_layers(model)
        or plan_tiles(*x.shape[-2:], tile, overlap, multiple).count == 1
    ):
        return tiled_apply(run, x, tile, overlap, multiple, progress)
    # One more tile's worth of work: the whole image at tile size gives the shared values.
    statistics = record_statistics(model, torch_run, downscale_to_fit(x, tile, multiple))
    if onnx:
        runner = onnx_runner(model, multiple, minimum_size(model))
        values = runner.flatten(statistics)
        return tiled_apply(lambda t: run(t, values), x, tile, overlap, multiple, progress)
    with sharing_statistics(statistics):
        return tiled_apply(run, x, tile, overlap, multiple, progress)


def restore_tensor(
    model: nn.Module,
    image: torch.Tensor,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    min_tile: int | None = None,
    channels_last: bool = DEFAULT_CHANNELS_LAST,
    precision: str = DEFAULT_PRECISION,
    pool_window: int | None = None,
    shared_stats: bool = True,
    threads: int | None = None,
    backend: str = DEFAULT_BACKEND,
) -> torch.Tensor:
    """Restore an image tensor of any size.

    Args:
        model: a restoration network mapping ``(B, 3, H, W)`` in [0, 1] to the same shape.
        image: ``(3, H, W)`` or ``(B, 3, H, W)`` float tensor in [0, 1], on any device.
        tile: largest tile side in pixels. ``None`` (default) picks :func:`auto_tile_size`
            (512 for ``interir-small``); images no larger than a tile run whole. ``0`` never
            tiles. A model that must see the whole image
            (:func:`interir.models.sizing.needs_whole_image`: the classical methods) is never
            tiled, whatever ``tile`` says.
        overlap: smallest overlap between tiles in pixels; ``None`` picks :func:`auto_overlap`
            (64 for 512 px tiles).
        device: where the model runs (``"auto"``, ``"cpu"``, ``"cuda"``, ...); ``None`` keeps the
            model's current device. The model is moved there in place.
        progress: called as ``progress(done, total)`` after each tile of each image.
        min_tile: smallest tile the out-of-memory retry may shrink to (default ``4 * multiple``,
            at least 32).
        channels_last: run the model in ``torch.channels_last`` memory format (weights and
            input; the weights are put back afterwards). Same arithmetic, another memory layout:
            outputs agree with ``False`` to float rounding (~1e-6).
        precision: ``"fp32"``, ``"bf16"`` (``torch.autocast`` to bfloat16 on the CPU or a
            CUDA GPU: convolutions and matrix products in bfloat16, the output cast back to
            float32; it differs from fp32 by about 1e-3, see ``docs/inference.md``) or
            ``"auto"`` (:func:`resolve_precision`: bf16 on a CPU with native bfloat16
            instructions, fp32 elsewhere).
        pool_window: [ours] side in input pixels of every EPBlock's channel-attention pooling
            window for this call (``InterIRConfig.pool_window``; 0 pools the whole image or tile);
            ``None`` (default) keeps the model's own. InterIR models only. The model is changed
            for the call and put back after it, so calls sharing one model should not run
            concurrently with different windows.
        shared_stats: [ours] when the image is tiled, every tile uses the whole image's global
            statistics (channel attention's averages, the explainable convs' kernel attention;
            :mod:`interir.inference.shared_stats`) from one extra pass over the image downscaled
            to a tile. Tiles computing their own made visible seams; ``False`` restores the old
            behaviour (for comparison).
        threads: torch CPU threads for this call (torch's setting is put back after it); ``None``
            follows the rule of every entry point (:mod:`interir.utils.threads`):
            ``INTERIR_THREADS``, else 1 (measured in ``benchmarks/results/thread_default.md``);
            0 keeps torch's own setting.
        backend: [ours] ``"torch"`` (default) or ``"onnx"``: the model runs on onnxruntime's CPU
            provider in float32 (:mod:`interir.inference.onnx_backend`; exported once per set of
            weights and cached, 1-3 minutes the first time). CPU only; ``precision`` must be
            ``"auto"`` or ``"fp32"`` and ``channels_last`` does not apply. Outputs agree with
            the PyTorch float32 ones to ~1e-5; tiles share the whole image's statistics as with
            ``"torch"``.

    Returns:
        The restored image, same shape as ``image``, float32 in [0, 1], on ``image``'s device.
        Batch samples are restored one at a time (per-sample results do not depend on the batch).

    Raises:
        ValueError: a bad shape, dtype, tile, overlap or setting (the message names the valid
            choices).
        ImportError: ``backend="onnx"`` without onnxruntime (the message says what to install).
    """
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            "expected an RGB image (3, H, W) or batch (B, 3, H, W), got shape "
            f"{tuple(image.shape)}; replicate grayscale with image.expand(3, -1, -1)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected float values in [0, 1], got dtype {x.dtype}; divide 8-bit data by 255"
        )
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be >= 0 (0 = never tile), got {tile}")
    if overlap is not None and overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    check_inference_settings(channels_last, precision, pool_window)
    check_backend(backend)
    run_device = module_device(model) if device is None else resolve_device(device)
    run_precision = resolve_precision(precision, run_device)
    if backend == "onnx":
        if run_device.type != "cpu":
            raise ValueError(f"backend='onnx' runs on the CPU, not on {run_device}; pass "
                             "--device cpu, or --backend torch to use the device")
        if precision == "bf16":
            raise ValueError("backend='onnx' runs float32; pass --precision fp32 (or auto), or "
                             "--backend torch for bf16")
        require_onnxruntime()
        run_precision, channels_last = "fp32", False
    if module_device(model) != run_device:
        model.to(run_device)
    multiple = size_multiple(model)
    whole = needs_whole_image(model)
    tile_size = 0 if whole else auto_tile_size(model) if tile is None else int(tile)
    if tile_size > 0:
        tile_size = max(multiple, tile_size // multiple * multiple)
    ov = auto_overlap(tile_size, multiple) if overlap is None else int(overlap)
    if tile_size > 0 and ov >= tile_size:
        raise ValueError(
            f"overlap ({ov}) must be smaller than the tile ({tile_size}); lower --overlap"
        )
    floor = min_tile if min_tile is not None else max(32, 4 * multiple)
    if whole:  # out of memory: no retry in tiles, the error says what to do
        floor = max(x.shape[-2:]) + 1

    was_training = model.training
    model.eval()
    try:
        with thread_count(threads), _model_settings(model, channels_last, pool_window):
            runner = (onnx_runner(model, multiple, minimum_size(model)) if backend == "onnx"
                      else None)
            with torch.inference_mode(), explanations_disabled(model):
                outputs = [
                    _restore_one(model, x[b : b + 1], tile_size, ov, run_device, floor, progress,
                                 channels_last, run_precision, shared_stats, runner)
                    for b in range(x.shape[0])
                ]
    finally:
        model.train(was_training)
    # Out of inference mode, so the caller gets an ordinary tensor (one copy either way).
    if len(outputs) == 1:
        out = outputs[0].clamp(0.0, 1.0)
    else:
        out = torch.cat(outputs, 0).clamp_(0.0, 1.0)
    return out[0] if squeeze else out
