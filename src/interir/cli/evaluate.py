"""``interir eval``: score models on paired folders and synthetic suites (CSV, Markdown, JSON)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app
from interir.utils.progress import ProgressDisplay
from interir.cli.options import DEFAULT_BACKEND, THREADS_HELP, check_backend

EVAL_CHANNELS_LAST_HELP = (
    "Run networks in channels-last memory (float32 either way; default). The same values to "
    "~1e-5 (scores within 0.001 dB) and faster on the CPU (docs/inference.md); "
    "--no-channels-last gives the contiguous reference that validation uses.")
EVAL_BACKEND_HELP = (
    "torch | onnx. 'onnx' runs networks on onnxruntime (CPU, float32; needs the onnx extra), "
    "exported once per set of weights (1-3 min) and cached; outputs within ~1e-5 of PyTorch's.")


@app.command("eval")
def eval_command(
    datasets: Annotated[list[Path], typer.Argument(
        help="Dataset folders: synthetic suites from `interir synth` (<combination>/input|target) "
             "or paired folders (input/target, rain/norain, hazy/clear).",
        show_default=False)],
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m",
        help="Model to evaluate, repeatable: checkpoint folder/run/.safetensors, registered name, "
             "'default' (bundled weights), or classical-dcp | classical-nlm | classical-dcp+nlm. "
             "LABEL=SPEC names the table row.")] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder for per_image.csv, summary.md, summary.json "
                            "(and images/ with --save-images).")] = Path("results/eval"),
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the reports (and with --save-images the images) an earlier "
                            "evaluation left in --out (default: refuse before any work).")] = False,
    save_images: Annotated[bool, typer.Option(
        "--save-images", help="Also save the restored images under OUT/images/.")] = False,
    y_channel: Annotated[bool, typer.Option(
        "--y-channel/--rgb", help="Score the Y channel of YCbCr (BT.601) or RGB.")] = False,
    round_y: Annotated[bool, typer.Option(
        "--round-y/--float-y",
        help="Y rounded to 8 bits (MATLAB/MPRNet/Restormer) or kept as float (BasicSR).")] = False,
    crop_border: Annotated[int, typer.Option(
        "--crop-border", min=0, help="Pixels dropped on every side before scoring.")] = 0,
    quantize: Annotated[bool, typer.Option(
        "--quantize/--no-quantize",
        help="Round images to 8 bits before scoring (as saved PNGs).")] = True,
    device: Annotated[str, typer.Option(
        "--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    tile: Annotated[Optional[int], typer.Option(
        "--tile", min=16,
        help="Restore large images in tiles of this size (networks only).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help="At most N images per dataset and per combination (quick looks).")] = None,
    title: Annotated[str, typer.Option("--title", help="Heading of the summary table.")] =
        "Evaluation",
    max_pixels: Annotated[Optional[int], typer.Option(
        "--max-pixels", min=1, help="Refuse images with more pixels than this, read from the file "
                                    "header (default: what the available memory holds).",
        show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress output (the table is still printed).")] = False,
    channels_last: Annotated[bool, typer.Option(
        "--channels-last/--no-channels-last", help=EVAL_CHANNELS_LAST_HELP)] = True,
    backend: Annotated[str, typer.Option("--backend", help=EVAL_BACKEND_HELP)] = DEFAULT_BACKEND,
) -> None:
    """Evaluate one or more models on datasets; print the summary table and write the reports.

    Progress (per image) is a bar on a terminal and plain lines otherwise.
    """
    from interir.engine.evaluate import EvalOptions, check_report_folder, evaluate
    from interir.metrics.image import MetricSettings
    from interir.utils.files import OutputPathError, check_writable_dir
    from interir.utils.io import pixel_limit
    from interir.utils.threads import apply_threads

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if round_y and not y_channel:
        raise typer.BadParameter("--round-y only applies with --y-channel", param_hint="--round-y")
    check_backend(backend)
    options = EvalOptions(
        settings=MetricSettings(y_channel=y_channel, round_y=round_y, crop_border=crop_border,
                                quantize=quantize),
        device=device,
        tile=tile,
        save_images_to=out / "images" if save_images else None,
        limit=limit,
        title=title,
        log_every=0,
        channels_last=channels_last,
        backend=backend,
    )
    display = ProgressDisplay(0, "images", mode="off" if quiet else "auto", interval=5.0)
    options.progress = display.update
    try:  # before any model is loaded or image restored
        check_writable_dir(out, "--out folder")
        check_report_folder(out, overwrite, save_images)
    except (OutputPathError, FileExistsError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    apply_threads(threads)
    try:
        with pixel_limit(max_pixels), display:
            report = evaluate(model or ["default"], datasets, options)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, ImportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    paths = report.write(out)
    typer.echo(report.table.to_markdown())
    typer.echo("Wrote " + ", ".join(str(p) for p in paths.values())
               + (f" and {out / 'images'}/" if save_images else ""))
    if not quiet:
        typer.echo(f"Scored {display.summary()}")
