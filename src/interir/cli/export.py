"""``interir export``: ONNX (dynamic batch, height, width) or TorchScript."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app


@app.command("export")
def export_command(
    model: Annotated[str, typer.Option(
        "--model", "-m",
        help="'default' (bundled weights), a checkpoint folder/run/.safetensors, or a registered "
             "name (random weights).")] = "default",
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx | torchscript.")] = "onnx",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="File to write (default: interir.onnx / interir.pt).")] = None,
    example_size: Annotated[str, typer.Option(
        "--example-size", help="HxW of the traced example (the exported graph accepts any size).")] = "64x96",
    fixed_batch: Annotated[bool, typer.Option(
        "--fixed-batch", help="ONNX: fix the batch at 1 instead of making it dynamic.")] = False,
    optimize: Annotated[bool, typer.Option(
        "--optimize/--no-optimize",
        help="ONNX: run the onnxscript graph optimiser (slow; onnxruntime optimises on load).")] = False,
    check: Annotated[bool, typer.Option(
        "--check/--no-check",
        help="Compare the export with PyTorch on two other sizes (ONNX: needs onnxruntime).")] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --output file (never the model's own files).")] = False,
) -> None:
    """Export a model for deployment and check it against the PyTorch model."""
    from interir.export import EXPORT_FORMATS, check_export_output, export_model
    from interir.loading import load_model
    from interir.profiling import parse_sizes

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    try:
        ((h, w),) = parse_sizes(example_size)
    except ValueError as err:
        raise typer.BadParameter("one size, e.g. 64x96", param_hint="--example-size") from err
    path = output or Path("interir.onnx" if fmt == "onnx" else "interir.pt")
    try:
        check_export_output(path, overwrite, model)  # before the slow model loading and tracing
        net = load_model(model, "cpu")
        result = export_model(
            net, path, fmt, example_size=(h, w), dynamic_batch=False if fixed_batch else None,
            optimize=optimize, check=check,
        )
    except (FileNotFoundError, ValueError, RuntimeError, ImportError, AssertionError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    batch = "dynamic" if result.dynamic_batch else "1"
    typer.echo(
        f"Wrote {result.path} ({fmt}, batch {batch}, height and width dynamic, >= {result.min_size} px) "
        f"in {result.seconds:.1f} s"
    )
    if result.max_abs_error is not None:
        typer.echo(f"Checked against PyTorch on {result.checked_shapes}: max |difference| = "
                   f"{result.max_abs_error:.2e}")
    elif check:
        typer.echo('Not checked: onnxruntime is not installed (pip install "interir[onnx]")')
