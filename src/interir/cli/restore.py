"""``interir restore``: restore image files and folders (no ground truth needed)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app
from interir.cli.options import (
    DEFAULT_BACKEND,
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    PRECISIONS,
    THREADS_HELP,
    check_backend,
)
from interir.utils.progress import ProgressDisplay, format_seconds

# Help of the inference settings. The figures were measured on a 2-core CPU with the default
# model (docs/inference.md); the help names no repository file, which an installed wheel lacks.
CHANNELS_LAST_HELP = (
    "Run the model in channels-last memory format: the same result to float rounding; with bf16 "
    "1.6x faster than bf16 alone for the default model on the 2-core CPU measured, hence the "
    "default.")
PRECISION_HELP = (
    "auto | fp32 | bf16. bf16 runs convolutions and matrix products in bfloat16 (torch.autocast, "
    "CPU or CUDA); the output stays float32. With channels-last it was 1.98x faster than fp32 "
    "(CPU time) and within 0.02 dB PSNR of it. 'auto' (default): bf16 on a CPU with native "
    "bfloat16 instructions (AVX512-BF16 or AMX), like the one measured; fp32 elsewhere, GPUs "
    "included.")
BACKEND_HELP = (
    "torch | onnx. 'onnx' runs the model on onnxruntime (CPU, float32; needs the onnx extra), "
    "exported once per set of weights (1-3 min) and cached: faster than PyTorch's float32 on a "
    "CPU without native bfloat16 (docs/inference.md). Outputs agree with PyTorch's to ~1e-5.")
POOL_WINDOW_HELP = (
    "Side in pixels of the window every block's channel attention averages over (0: the whole "
    "image); default: the model's own (0 for the shipped models, which validated better with "
    "whole-image pooling than with a 192-px window; a 192-px window was also slower and 0.47 dB "
    "worse on a 1024x768 photo). InterIR models only.")


def _parse_tile(value: str) -> Optional[int]:
    text = value.strip().lower()
    if text == "auto":
        return None
    if text in ("0", "off", "none"):
        return 0
    try:
        tile = int(text)
    except ValueError:
        raise typer.BadParameter("use auto, off (0) or a tile side in pixels, e.g. 512") from None
    if tile < 16:
        raise typer.BadParameter("tile must be at least 16 pixels (or 0/off for no tiling)")
    return tile


def _start_image(display: ProgressDisplay, src: Path, count: int) -> None:
    display.total = count
    display.start(src.name)


def _result_printer(display: ProgressDisplay, quiet: bool):
    """``on_result`` for :func:`restore_paths`: one line per input, written ones with their time."""

    def on_result(status: str, src: Path, detail: object) -> None:
        seconds = display.finish(src.name)
        if status == "failed":
            display.print(f"FAILED  {src}: {detail}", err=True)
        elif status == "written" and not quiet:
            display.print(f"written {src} -> {detail}  ({format_seconds(seconds)})")
        elif not quiet:
            display.print(f"{status:8s}{src} -> {detail}")

    return on_result


def _timing(seconds: dict[str, float]) -> str:
    """`` in 12.3 s (4.10 s per image)`` for the written images, or nothing."""
    if not seconds:
        return ""
    total = sum(seconds.values())
    return f" in {format_seconds(total)} ({format_seconds(total / len(seconds))} per image)"


@app.command("restore")
def restore_command(
    inputs: Annotated[list[Path], typer.Argument(
        help="Image files and/or folders of images (PNG 8/16-bit, JPEG, TIFF, BMP, WebP; "
             "grayscale and RGBA kept).", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output folder (created when missing).", show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m",
        help="'default' (bundled weights: haze, thin and dense rain, noise), 'default-v1' (the "
             "earlier default), another shipped model (interir models), a checkpoint "
             "folder/run/.safetensors, a registered name (random weights, for testing), or a "
             "classical method: classical-dcp | classical-nlm | classical-dcp+nlm (whole image, "
             "never tiled).")] = "default",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    tile: Annotated[str, typer.Option(
        "--tile",
        help="Largest tile side in pixels for large images; 'auto' (128 x the model's down-sampling "
             "factor: 512 for the default model) or 'off' (whole image at once).")] = "auto",
    overlap: Annotated[Optional[int], typer.Option(
        "--overlap", min=0, help="Smallest overlap between tiles in pixels (default: tile/8, "
                                 "16 to 64).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace outputs that already exist (default: skip them).")] = False,
    output_format: Annotated[str, typer.Option(
        "--format", help="same | png | jpg | tif | webp | bmp. 'same' keeps each input's format "
                         "(16-bit or alpha inputs go to PNG when their format cannot hold them).")] = "same",
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Also restore images in sub-folders of folder inputs.")] = False,
    quality: Annotated[int, typer.Option("--quality", min=1, max=100, help="JPEG quality.")] = 95,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print only failures and the summary (no progress).")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(
        "--max-pixels", min=1, help="Refuse images with more pixels than this, read from the file "
                                    "header before decoding (default: what the available memory "
                                    "holds).", show_default=False)] = None,
    channels_last: Annotated[bool, typer.Option(
        "--channels-last/--no-channels-last", help=CHANNELS_LAST_HELP)] = DEFAULT_CHANNELS_LAST,
    precision: Annotated[str, typer.Option("--precision", help=PRECISION_HELP)] = DEFAULT_PRECISION,
    pool_window: Annotated[Optional[int], typer.Option(
        "--pool-window", min=0, help=POOL_WINDOW_HELP, show_default=False)] = None,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = DEFAULT_BACKEND,
) -> None:
    """Restore images hit by haze, rain and noise; each keeps its size, bit depth and alpha.

    Unreadable files are reported and skipped; the exit code is 1 when any input failed. Input
    files are never replaced. Progress (per image and per tile) is a bar on a terminal and plain
    lines otherwise; each image's line ends with its time.
    """
    from interir.inference import OUTPUT_FORMATS, restore_paths
    from interir.loading import resolve_model
    from interir.utils.files import OutputPathError, check_writable_dir
    from interir.utils.io import pixel_limit
    from interir.utils.threads import apply_threads

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if output_format not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(OUTPUT_FORMATS)}", param_hint="--format")
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"use one of {', '.join(PRECISIONS)}", param_hint="--precision")
    check_backend(backend)
    if backend == "onnx" and precision == "bf16":
        raise typer.BadParameter("--backend onnx runs float32; use --precision fp32 or auto, "
                                     "or --backend torch for bf16", param_hint="--precision")
    tile_size = _parse_tile(tile)
    try:  # before loading the model and restoring anything
        check_writable_dir(output)
    except OutputPathError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    apply_threads(threads)
    try:
        _, net = resolve_model(model, device)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
        typer.echo(f"error: cannot load model {model!r}: {err}", err=True)
        raise typer.Exit(code=2) from err

    display = ProgressDisplay(0, "images", mode="off" if quiet else "auto", interval=None)
    try:
        with pixel_limit(max_pixels), display:
            report = restore_paths(
                inputs, output, net, overwrite=overwrite, tile=tile_size, overlap=overlap,
                output_format=output_format, recursive=recursive, quality=quality,
                on_result=_result_printer(display, quiet), progress=display.steps,
                on_start=lambda src, index, count: _start_image(display, src, count),
                channels_last=channels_last, precision=precision, pool_window=pool_window,
                backend=backend,
            )
    except OutputPathError as err:  # the folder changed since the check above
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    for src, note in report.notes:
        typer.echo(f"note    {src}: {note}")
    typer.echo(report.summary() + _timing(report.seconds))
    if not report.ok:
        raise typer.Exit(code=1)
