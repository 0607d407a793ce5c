"""Restore images of any size, from tensors or from files and folders (no ground truth needed).

- :func:`restore_tensor` runs a model on a ``(3, H, W)`` or ``(B, 3, H, W)`` tensor under
  ``torch.inference_mode``: images smaller than the model's minimum are padded, large ones are
  split into overlapping tiles blended with a raised-cosine window (:mod:`.tiling`), and on an
  out-of-memory error the tile is halved and the image retried. The result is clamped to [0, 1].
- :func:`restore_file` / :func:`restore_paths` read images with :func:`interir.utils.io.read_image`
  (JPEG, 8/16-bit PNG, TIFF, grayscale, RGBA, EXIF orientation) and write the result with the
  input's size, bit depth, grayscale-ness and alpha channel. A file that cannot be read or
  restored is reported with its reason and the batch goes on; an existing output is never
  replaced unless ``overwrite=True``, and an input file never, whatever the flags.

Outputs are planned in full before any image is restored: the output folder must be writable,
each output name is final (a 16-bit TIFF that must become a PNG is renamed from its header, before
the name is checked against the other outputs and the inputs), an output format that cannot
be written is refused with the fix, and so is an output blocked by a folder of its name. A file
given twice is restored once; an output folder inside a folder input is not read as input (a
second ``restore photos -r -o photos/restored`` does not restore the first one's outputs); the
temporary files that a killed run left beside the planned outputs are deleted.

Whole-image statistics (channel attention's global averages, the explainable convs' kernel
attention) are computed once, on the image downscaled to a tile, and shared by every tile
(:mod:`.shared_stats`): tiles computing their own disagreed and left visible seams (issue 30).
InterIR's Kronecker degradation factors still come from each tile, so a tiled restoration is
not bit-identical to an untiled one. The automatic tile size keeps the factors' working
resolution at 128 x 128 (512 px tiles for ``downsample=4``), where the difference is small (see
``docs/inference.md`` for measured figures) and where the cost per megapixel stops growing with
the image size.

Three settings choose how the model runs (:func:`restore_tensor`'s
``channels_last``, ``precision`` and ``pool_window``; ``--channels-last``, ``--precision`` and
``--pool-window`` of ``interir restore``). Their defaults, :data:`DEFAULT_CHANNELS_LAST` and
:data:`DEFAULT_PRECISION`, were chosen by ``benchmarks/inference_settings.py``
(``benchmarks/results/inference_settings.md``): a setting is on by default only if it was faster
and kept the PSNR against the clean photo within 0.05 dB of fp32's. Together they were fastest
(idle machine, 2026-12-03): channels-last with bf16 ran the default model 1.98x faster than fp32
in CPU time (1.95x at 512 x 512, 2.01x at 1024 x 768; 1.88x in wall time) and changed the PSNR by
+0.02 / -0.01 dB. So the defaults are
``channels_last=True`` and ``precision="auto"``: bf16 on a CPU with native bfloat16 instructions
(AVX512-BF16 or AMX, like the machine measured), fp32 elsewhere. ``pool_window`` defaults to the
model's own (``None``); a 192-px window was slower and lost 0.47 dB on the 1024 x 768 photo.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interir.inference.shared_stats import (
    downscale_to_fit,
    global_layers,
    record_statistics,
    sharing_statistics,
)
from interir.inference.tiling import plan_tiles, tiled_apply
from interir.models.explainable_conv import explanations_disabled
from interir.utils.device import empty_cache, is_out_of_memory, module_device, resolve_device
from interir.utils.files import check_writable_dir, remove_stale_temps
from interir.utils.threads import thread_count
from interir.utils.io import (
    WRITABLE_EXTENSIONS,
    ImageReadError,
    LoadedImage,
    list_images,
    read_header,
    read_image,
    write_image,
)

__all__ = [
    "auto_tile_size",
    "auto_overlap",
    "size_multiple",
    "minimum_size",
    "restore_tensor",
    "restore_file",
    "restore_paths",
    "plan_outputs",
    "RestoreReport",
    "OutputExistsError",
    "OUTPUT_FORMATS",
    "PRECISIONS",
    "DEFAULT_CHANNELS_LAST",
    "DEFAULT_PRECISION",
    "check_inference_settings",
    "cpu_has_native_bf16",
    "resolve_precision",
]

log = logging.getLogger(__name__)

#: ``output_format`` values accepted by :func:`restore_paths` (``"same"`` keeps the input's).
OUTPUT_FORMATS = ("same", "png", "jpg", "tif", "webp", "bmp")

#: Working resolution (pixels per side after the model's down-sampling) of an automatic tile.
AUTO_WORKING_SIZE = 128
#: Automatic tile side for models without a down-sampling factor (e.g. NAFNet).
AUTO_TILE_FALLBACK = 512

#: ``precision`` values of :func:`restore_tensor`: ``"fp32"`` (plain float32), ``"bf16"``
#: (``torch.autocast`` to bfloat16 on the CPU or a CUDA GPU; the output is float32 either way) and
#: ``"auto"`` ([ours]: bf16 on a CPU with native bfloat16 instructions, where it was measured
#: faster, fp32 everywhere else; see :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16")
#: [ours] Default of ``channels_last``, chosen by measurement (module docstring): with bf16 it
#: made the default model 1.6x faster in CPU time than bf16 alone (alone, in fp32, 1.23x), the
#: same output to 1.6e-5.
DEFAULT_CHANNELS_LAST = True
#: [ours] Default of ``precision``, chosen by measurement (module docstring): with channels-last,
#: bf16 was 1.98x faster than fp32 in CPU time and moved the PSNR against the clean photo by at
#: most 0.02 dB; ``"auto"`` runs it only on CPUs with native bfloat16 instructions, like the one
#: measured.
DEFAULT_PRECISION = "auto"


# ----------------------------------------------------------------------------------------------
# model properties


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


def auto_overlap(tile: int, multiple: int = 1) -> int:
    """Default overlap for a tile side: 1/8 of it, 16 to 64 pixels, a multiple of ``multiple``."""
    overlap = min(64, max(16, tile // 8))
    overlap = -(-overlap // multiple) * multiple
    return min(overlap, max(0, tile // 2))


# ----------------------------------------------------------------------------------------------
# inference settings


def check_inference_settings(
    channels_last: bool, precision: str, pool_window: int | None = None
) -> None:
    """Raise a ``ValueError`` naming the valid choices when a setting is not one of them.

    Args:
        channels_last: ``True`` or ``False``.
        precision: one of :data:`PRECISIONS` (``"auto"``, ``"fp32"``, ``"bf16"``).
        pool_window: ``None`` (the model's own) or a window side in pixels >= 0 (0: whole image).
    """
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last must be True or False, got {channels_last!r}")
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if pool_window is not None and (
        isinstance(pool_window, bool) or not isinstance(pool_window, int) or pool_window < 0
    ):
        raise ValueError(
            "pool_window must be None (the model's own), 0 (pool the whole image) or a window "
            f"side in pixels > 0, got {pool_window!r}"
        )


def _is_channels_last(model: nn.Module) -> bool:
    """True when every 4-D parameter of ``model`` is stored channels-last (False without any)."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in weights
    )


@contextmanager
def _model_settings(model: nn.Module, channels_last: bool, pool_window: int | None):
    """Run the model channels-last and/or with another pooling window, then put it back.

    The conversions run outside ``inference_mode`` (also when the caller is inside it, e.g. a
    validation pass): parameters converted inside it would become inference tensors that a later
    training step could not use. A model the caller already converted to channels-last stays so. ``pool_window`` needs a model with ``set_pool_window`` (InterIR).
    """
    convert = channels_last and not _is_channels_last(model)
    previous_window = None
    if pool_window is not None:
        setter = getattr(model, "set_pool_window", None)
        if setter is None:
            raise ValueError(
                f"pool_window applies to InterIR models; {type(model).__name__} has no pooling "
                "window. Fix: leave pool_window unset (None)"
            )
        previous_window = setter(pool_window)
    try:
        if convert:
            with torch.inference_mode(False):
                model.to(memory_format=torch.channels_last)
        yield
    finally:
        if convert:
            with torch.inference_mode(False):
                model.to(memory_format=torch.contiguous_format)
        if previous_window is not None:
            model.set_pool_window(previous_window)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX tiles), as torch reports.

    Without them torch's bfloat16 CPU kernels convert in software and can be slower than float32.
    """
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)  # private helpers of torch.cpu (torch >= 2.3)
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - an unknown CPU counts as one without them
            continue
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision a setting means on a device: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` ([ours]) is ``"bf16"`` on a CPU with native bfloat16 instructions
    (:func:`cpu_has_native_bf16`), the kind of machine ``benchmarks/inference_settings.py``
    measured it faster on, and ``"fp32"`` elsewhere (other CPUs, GPUs: not measured, and bf16
    fails on CUDA GPUs older than Ampere). ``"fp32"`` and ``"bf16"`` are returned as they are.
    """
    if precision != "auto":
        return precision
    device = torch.device(device)
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _autocast(precision: str, device: torch.device) -> ContextManager:
    """``torch.autocast`` to bfloat16 for ``"bf16"`` (CPU and CUDA), nothing for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"precision='bf16' runs on the CPU and CUDA GPUs, not on {device.type}; "
            "use precision='fp32' (--precision fp32)"
        )
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# tensors


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
) -> torch.Tensor:
    """Restore one ``(1, 3, H, W)`` image; ``tile == 0`` means the whole image at once.

    With ``shared_stats`` every tile uses the whole image's global statistics
    (:mod:`.shared_stats`), taken from one pass over the image downscaled to a tile.
    """
    height, width = x.shape[-2:]
    multiple = size_multiple(model)
    min_size = minimum_size(model)
    current = tile

    def run(t: torch.Tensor) -> torch.Tensor:
        return _run_model(model, t, device, min_size, channels_last, precision)

    while True:
        try:
            if current <= 0 or (height <= current and width <= current):
                out = run(x)
                if progress is not None:
                    progress(1, 1)
                return out
            ov = min(overlap, max(0, current // 2))
            return _tiled(model, run, x, current, ov, multiple, progress, shared_stats)
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
    model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
    overlap: int, multiple: int, progress: Callable[[int, int], None] | None, shared_stats: bool,
) -> torch.Tensor:
    """:func:`tiled_apply` of ``run``, the tiles sharing the whole image's statistics."""
    if (
        not shared_stats or not global_layers(model)
        or plan_tiles(*x.shape[-2:], tile, overlap, multiple).count == 1
    ):
        return tiled_apply(run, x, tile, overlap, multiple, progress)
    # One more tile's worth of work: the whole image at tile size gives the shared values.
    statistics = record_statistics(model, run, downscale_to_fit(x, tile, multiple))
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
) -> torch.Tensor:
    """Restore an image tensor of any size.

    Args:
        model: a restoration network mapping ``(B, 3, H, W)`` in [0, 1] to the same shape.
        image: ``(3, H, W)`` or ``(B, 3, H, W)`` float tensor in [0, 1], on any device.
        tile: largest tile side in pixels. ``None`` (default) picks :func:`auto_tile_size`
            (512 for ``interir-small``); images no larger than a tile run whole. ``0`` never
            tiles.
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
            ``INTERIR_THREADS``, else 1, which was never much slower and up to 5x faster on a busy
            machine; 0 keeps torch's own setting.

    Returns:
        The restored image, same shape as ``image``, float32 in [0, 1], on ``image``'s device.
        Batch samples are restored one at a time (per-sample results do not depend on the batch).

    Raises:
        ValueError: a bad shape, dtype, tile, overlap or setting (the message names the valid
            choices).
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
    run_device = module_device(model) if device is None else resolve_device(device)
    run_precision = resolve_precision(precision, run_device)
    if module_device(model) != run_device:
        model.to(run_device)
    multiple = size_multiple(model)
    tile_size = auto_tile_size(model) if tile is None else int(tile)
    if tile_size > 0:
        tile_size = max(multiple, tile_size // multiple * multiple)
    ov = auto_overlap(tile_size, multiple) if overlap is None else int(overlap)
    if tile_size > 0 and ov >= tile_size:
        raise ValueError(
            f"overlap ({ov}) must be smaller than the tile ({tile_size}); lower --overlap"
        )
    floor = min_tile if min_tile is not None else max(32, 4 * multiple)

    was_training = model.training
    model.eval()
    try:
        with thread_count(threads), _model_settings(model, channels_last, pool_window):
            with torch.inference_mode(), explanations_disabled(model):
                outputs = [
                    _restore_one(model, x[b : b + 1], tile_size, ov, run_device, floor, progress,
                                 channels_last, run_precision, shared_stats)
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


# ----------------------------------------------------------------------------------------------
# files


@dataclass
class RestoreReport:
    """What :func:`restore_paths` did.

    Attributes:
        written: ``(input, output)`` pairs written.
        skipped: ``(input, output)`` pairs not written because the output already existed.
        failed: ``(input, reason)`` pairs that could not be read, restored or written.
        notes: ``(input, note)`` pairs for changes of format forced by the input (e.g. a 16-bit
            TIFF written as 16-bit PNG), inputs given twice (restored once), an output folder
            inside a folder input (its images skipped), and deleted temporary files of earlier
            interrupted writes.
        seconds: wall-clock seconds per written input.
    """

    written: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.written)} written, {len(self.skipped)} skipped (output exists; pass "
            f"--overwrite to replace), {len(self.failed)} failed"
            if self.skipped
            else f"{len(self.written)} written, {len(self.failed)} failed"
        )

    def to_dict(self) -> dict:
        return {
            "written": [[str(a), str(b)] for a, b in self.written],
            "skipped": [[str(a), str(b)] for a, b in self.skipped],
            "failed": [[str(a), r] for a, r in self.failed],
            "notes": [[str(a), n] for a, n in self.notes],
            "seconds": dict(self.seconds),
        }


def _extension_for(src: Path, output_format: str) -> str:
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    return src.suffix if output_format == "same" else "." + output_format


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for (``path`` is the output)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        self.path = Path(path)


def _output_settings(
    dst: Path, bit_depth: int, has_alpha: bool, exact_format: bool
) -> tuple[Path, int, bool, str | None]:
    """Output path, bit depth, whether to keep alpha, and a note when something had to change.

    With ``exact_format`` the extension of ``dst`` is kept (16 bits become 8 and alpha is dropped
    where the format cannot hold them); otherwise the format changes to PNG instead.
    """
    ext = dst.suffix.lower()
    holds_16 = ext == ".png"
    holds_alpha = ext in (".png", ".tif", ".tiff", ".webp")
    notes = []
    if bit_depth == 16 and not holds_16:
        if not exact_format:
            return dst.with_suffix(".png"), 16, has_alpha, (
                f"16-bit input written as 16-bit PNG ({ext} holds 8 bits only)"
            )
        bit_depth = 8
        notes.append(f"16-bit input written as 8-bit {ext} as asked")
    if has_alpha and not holds_alpha:
        if not exact_format:
            note = f"input with alpha written as PNG ({ext} has no alpha)"
            return dst.with_suffix(".png"), bit_depth, True, note
        has_alpha = False
        notes.append(f"alpha channel dropped: {ext} has none")
    return dst, bit_depth, has_alpha, "; ".join(notes) or None


def _path_key(path: Path) -> str:
    """How two paths are compared: symlinks resolved, case folded where the system folds it, the
    extension in lower case (``x.PNG`` and ``x.png`` are one file on case-insensitive disks)."""
    real = Path(os.path.realpath(path))
    return os.path.normcase(str(real.with_suffix(real.suffix.lower())))


def _strictly_inside(path: Path, folder_real: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real != folder_real and real.is_relative_to(folder_real)


def _folder_images(
    path: Path, recursive: bool, out_real: Path
) -> tuple[list[Path], str | None, str | None]:
    """The images of a folder input, less those under the output folder when it lies inside
    (the outputs of an earlier run, which must not be restored again); ``(files, failure, note)``."""
    try:
        files = list_images(path, recursive=recursive)
    except OSError as exc:
        return [], f"cannot list folder: {exc}", None
    note = None
    if _strictly_inside(out_real, Path(os.path.realpath(path))):
        outputs = [f for f in files if Path(os.path.realpath(f)).is_relative_to(out_real)]
        if outputs:
            skip = set(outputs)
            files = [f for f in files if f not in skip]
            note = (f"{len(outputs)} image(s) under the output folder {out_real} not restored: "
                    "outputs are never inputs")
    if not files and note is None:
        return [], "folder holds no images (.png, .jpg, .tif, .bmp, .webp)", None
    return files, None, note


def _expand_inputs(
    inputs: Sequence[str | os.PathLike], recursive: bool, out_dir: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(file, output path relative to the output folder)`` for every input image, failures and
    notes. A file named twice (or also found in a folder input) is restored once."""
    candidates: list[tuple[Path, Path]] = []
    failed: list[tuple[Path, str]] = []
    notes: list[tuple[Path, str]] = []
    out_real = Path(os.path.realpath(out_dir))
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files, failure, note = _folder_images(path, recursive, out_real)
            failed.extend([(path, failure)] if failure else [])
            notes.extend([(path, note)] if note else [])
            candidates.extend((f, f.relative_to(path)) for f in files)
        elif path.exists():
            candidates.append((path, Path(path.name)))
        else:
            failed.append((path, "no such file or folder"))
    unique: dict[str, tuple[Path, Path]] = {}
    for src, rel in candidates:
        key = _path_key(src)
        if key in unique:
            notes.append((src, f"given more than once (as {unique[key][0]}); restored once"))
            continue
        unique[key] = (src, rel)
    return list(unique.values()), failed, notes


def _final_output(src: Path, requested: Path, exact_format: bool) -> Path:
    """The path actually written for ``src``: ``requested``, or its ``.png`` twin when the input's
    header shows 16 bits or alpha that the requested format cannot hold (:func:`_output_settings`)."""
    if exact_format:
        return requested
    try:
        head = read_header(src)
    except ImageReadError:
        return requested  # reading it fails later, with the reason
    return _output_settings(requested, head.bit_depth, head.has_alpha, False)[0]


def _in_the_way(dst: Path) -> str | None:
    """Why ``dst`` cannot be created: a folder under its name, or a file where a folder on its
    path must be (None when nothing is in the way). Checked before any image is restored."""
    if dst.is_dir():
        return (f"a folder is in the way of its output {dst}. Fix: move or rename that folder, or "
                "restore into another folder (-o)")
    for parent in dst.parents:
        if parent.exists():
            if parent.is_dir():
                return None
            return (f"'{parent}' is a file, where the folder of its output {dst} must be. Fix: "
                    "move that file, or restore into another folder (-o)")
    return None


def _refusal(dst: Path, inputs: dict[str, Path], claimed: dict[str, Path]) -> str | None:
    """Why ``dst`` must not be written (None when it may): unwritable format, an input, or taken."""
    if dst.suffix.lower() not in WRITABLE_EXTENSIONS:
        kind = f"'{dst.suffix}'" if dst.suffix else "extension-less"
        return (f"cannot write {kind} output {dst}; pass --format png (or jpg, tif, webp, bmp; "
                "output_format= in Python)")
    blocked = _in_the_way(dst)
    if blocked is not None:
        return blocked
    key = _path_key(dst)
    if key in inputs:
        return (f"its output {dst} would replace the input file {inputs[key]}; inputs are never "
                "replaced, whatever --overwrite says. Fix: restore into another folder (-o)")
    if key in claimed:
        return (f"its output {dst} would also be written from {claimed[key]}; rename one of them "
                "or restore them into separate folders")
    return None


def _plan(
    inputs: Sequence[str | os.PathLike], out_dir: Path, output_format: str, recursive: bool
) -> tuple[list[tuple[Path, Path, Path]], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(input, requested output, final output)`` triples, failures and notes
    (:func:`plan_outputs`)."""
    candidates, failed, notes = _expand_inputs(inputs, recursive, out_dir)
    inputs_by_key = {_path_key(src): src for src, _ in candidates}
    exact = output_format != "same"
    claimed: dict[str, Path] = {}
    planned: list[tuple[Path, Path, Path]] = []
    for src, rel in candidates:
        requested = (out_dir / rel).with_suffix(_extension_for(src, output_format))
        dst = _final_output(src, requested, exact)
        reason = _refusal(dst, inputs_by_key, claimed)
        if reason is not None:
            failed.append((src, reason))
            continue
        claimed[_path_key(dst)] = src
        planned.append((src, requested, dst))
    return planned, failed, notes


def plan_outputs(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    output_format: str = "same",
    recursive: bool = False,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files and folders into ``(input, output)`` pairs under ``out_dir``.

    A file ``a/x.jpg`` goes to ``out_dir/x.jpg``; a folder's images keep their path relative to
    the folder (sub-folders only with ``recursive``). Each output is the final name: with
    ``output_format="same"`` a 16-bit or alpha input whose format cannot hold it goes to ``.png``
    (read from its header). Returned as ``(path, reason)`` failures: missing inputs, empty
    folders, outputs in a format that cannot be written (e.g. ``.gif``), outputs that would
    replace any input file, two inputs that would write the same output, and outputs blocked by
    a folder of their name (or a file where their folder must be). A file given twice is planned
    once, and a folder input skips the images under ``out_dir`` when ``out_dir`` lies inside it
    (the outputs of an earlier run).
    """
    planned, failed, _ = _plan(list(inputs), Path(out_dir), output_format, recursive)
    return [(src, dst) for src, _, dst in planned], failed


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _write_restored(
    loaded: LoadedImage, dst: Path, bit_depth: int, keep_alpha: bool, model: nn.Module,
    quality: int, **restore_kw,
) -> None:
    """Restore a read image and write it to ``dst`` with the given depth and alpha."""
    restored = restore_tensor(model, loaded.image, **restore_kw)
    write_image(
        dst, restored, bit_depth=bit_depth, alpha=loaded.alpha if keep_alpha else None,
        grayscale=loaded.was_grayscale, quality=quality,
    )


def restore_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: nn.Module,
    *,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    quality: int = 95,
    exact_format: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    channels_last: bool = DEFAULT_CHANNELS_LAST,
    precision: str = DEFAULT_PRECISION,
    pool_window: int | None = None,
) -> tuple[Path, str | None]:
    """Restore one image file.

    The output keeps the input's size, bit depth (a 16-bit input gives a 16-bit PNG), grayscale-ness
    and alpha channel (copied unchanged). EXIF orientation is applied on reading, so the output is
    upright and carries no orientation tag.

    Args:
        src: input image.
        dst: output path; its extension picks the format. Unless ``exact_format``, it changes to
            ``.png`` when the format cannot hold the input's 16 bits or alpha.
        model, tile, overlap, device, progress, channels_last, precision, pool_window: as in
            :func:`restore_tensor`.
        overwrite: replace an existing output.
        quality: JPEG quality of a ``.jpg`` output.
        exact_format: keep ``dst``'s format even if that loses 16 bits (written as 8) or alpha.
        max_pixels: largest image accepted (see :func:`interir.utils.io.read_image`).

    Returns:
        ``(path written, note)``; the note says what changed about the format, else ``None``.

    Raises:
        ImageReadError: ``src`` cannot be read, or is larger than the pixel limit.
        OutputExistsError: the output exists and ``overwrite`` is False.
        FileExistsError: the output is ``src`` itself (never replaced).
    """
    check_inference_settings(channels_last, precision, pool_window)
    src, dst = Path(src), Path(dst)
    loaded = read_image(src, max_pixels)
    dst, bit_depth, keep_alpha, note = _output_settings(
        dst, loaded.bit_depth, loaded.alpha is not None, exact_format
    )
    if _same_file(src, dst):
        raise FileExistsError(f"output {dst} is the input file itself; choose another output path")
    blocked = _in_the_way(dst)
    if blocked is not None:
        raise IsADirectoryError(blocked.replace("its output", "the output"))
    if dst.exists() and not overwrite:
        raise OutputExistsError(dst)
    _write_restored(loaded, dst, bit_depth, keep_alpha, model, quality, tile=tile, overlap=overlap,
                    device=device, progress=progress, channels_last=channels_last,
                    precision=precision, pool_window=pool_window)
    return dst, note


def restore_paths(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: nn.Module,
    *,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    output_format: str = "same",
    recursive: bool = False,
    quality: int = 95,
    on_result: Callable[[str, Path, object], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    on_start: Callable[[Path, int, int], None] | None = None,
    channels_last: bool = DEFAULT_CHANNELS_LAST,
    precision: str = DEFAULT_PRECISION,
    pool_window: int | None = None,
) -> RestoreReport:
    """Restore image files and folders into ``out_dir``; failures are reported, not raised.

    Args:
        inputs: image files and/or folders of images.
        out_dir: output folder (created when missing; checked to be writable before any work).
        model: the restoration network.
        overwrite: replace outputs that already exist (otherwise they are skipped). Input files
            are never replaced.
        tile, overlap, device: as in :func:`restore_tensor`.
        output_format: ``"same"`` keeps each input's format; or one of ``png``, ``jpg``, ``tif``,
            ``webp``, ``bmp``. 16-bit inputs always give 16-bit PNG unless a format is named
            (which writes 8-bit).
        recursive: also restore images in sub-folders of folder inputs (mirrored under
            ``out_dir``).
        quality: JPEG quality.
        on_result: called as ``on_result(status, input, detail)`` with status ``"written"``
            (detail: output path), ``"skipped"`` (output path) or ``"failed"`` (reason), as each
            input finishes.
        progress: called as ``progress(done, total)`` after each tile of the current image.
        max_pixels: largest image accepted (see :func:`interir.utils.io.read_image`).
        on_start: called as ``on_start(input, index, count)`` before each planned input is
            read (``index`` from 0; ``count`` counts the inputs refused while planning too, which
            are reported through ``on_result`` first).
        channels_last, precision, pool_window: as in :func:`restore_tensor`.

    Returns:
        A :class:`RestoreReport`.

    Raises:
        ValueError: a bad ``channels_last``, ``precision`` or ``pool_window`` (checked first).
        OutputPathError: ``out_dir`` is a file or cannot be written (checked first).
    """
    check_inference_settings(channels_last, precision, pool_window)
    check_writable_dir(out_dir)
    if device is not None:
        model.to(resolve_device(device))
    report = RestoreReport()
    planned, failed, report.notes = _plan(list(inputs), Path(out_dir), output_format, recursive)
    for stale in remove_stale_temps(dst for _, _, dst in planned):
        report.notes.append((stale, "deleted: the temporary file of an interrupted write"))

    def emit(status: str, src: Path, detail: object) -> None:
        if on_result is not None:
            on_result(status, src, detail)

    for src, reason in failed:
        report.failed.append((src, reason))
        emit("failed", src, reason)
    options = dict(overwrite=overwrite, tile=tile, overlap=overlap, quality=quality,
                   exact=output_format != "same", progress=progress, max_pixels=max_pixels,
                   channels_last=channels_last, precision=precision, pool_window=pool_window)
    count = len(failed) + len(planned)
    for index, (src, requested, dst) in enumerate(planned, start=len(failed)):
        if on_start is not None:
            on_start(src, index, count)
        start = time.perf_counter()
        try:
            status, note = _restore_planned(src, requested, dst, model, **options)
        except ImageReadError as exc:  # the path is printed beside the reason already
            status, note = "failed", f"{exc.reason}. Fix: {exc.fix}"
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            status, note = "failed", f"{type(exc).__name__}: {exc}"
        if status == "failed":
            report.failed.append((src, note))
            emit("failed", src, note)
            continue
        if status == "skipped":
            report.skipped.append((src, dst))
            emit("skipped", src, dst)
            continue
        report.written.append((src, dst))
        report.seconds[str(src)] = time.perf_counter() - start
        if note:
            report.notes.append((src, note))
        emit("written", src, dst)
    return report


def _restore_planned(
    src: Path, requested: Path, dst: Path, model: nn.Module, *, overwrite: bool, exact: bool,
    max_pixels: int | None, quality: int, **restore_kw,
) -> tuple[str, str | None]:
    """Restore one planned input; ``("written" | "skipped", note)``."""
    if _same_file(src, dst):  # a hard link to the input, which path comparison misses
        raise FileExistsError("its output is the input file itself; restore into another folder")
    # A quick check first, so an existing output costs no reading or restoring.
    if dst.exists() and not overwrite:
        return "skipped", None
    loaded = read_image(src, max_pixels)
    final, bit_depth, keep_alpha, note = _output_settings(
        requested, loaded.bit_depth, loaded.alpha is not None, exact
    )
    if final != dst:  # the header promised another depth or alpha than the pixels hold
        alpha = " with alpha" if loaded.alpha is not None else ""
        raise RuntimeError(
            f"decoding gave a {loaded.bit_depth}-bit image{alpha}, which needs {final.name}, not "
            f"the planned {dst.name}; nothing written. Fix: pass --format png, or re-export the file"
        )
    _write_restored(loaded, dst, bit_depth, keep_alpha, model, quality, **restore_kw)
    return "written", note
