"""``interir synth``: write the seeded seven-combination synthetic test sets."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from interir.cli.app import app


@app.command("synth")
def synth_command(
    clean_dir: Path = typer.Argument(..., help="Folder of clean images (PNG/JPEG/TIFF/BMP)."),
    out_dir: Path = typer.Argument(
        ..., help="Output folder: new or empty, or an earlier suite to replace with --overwrite."),
    seed: int = typer.Option(
        ..., "--seed", help="Base seed (the canonical CBSD68-MDIR uses 2025)."
    ),
    combinations: str = typer.Option(
        "all",
        "--combinations",
        help="Comma-separated combinations, e.g. haze,rain,haze+rain+noise (default: all seven).",
    ),
    levels: str = typer.Option(
        None,
        "--levels",
        help="Fixed levels instead of drawn ones, e.g. haze=100,rain=200,noise=25.",
    ),
    max_levels: str = typer.Option(
        None,
        "--max-levels",
        help="Ends of the level ranges (default haze=150,rain=300,noise=50).",
    ),
    threads: int = typer.Option(
        1, "--threads", help="torch CPU threads (images are processed one at a time; 1 is best "
        "for small images). Outputs do not depend on it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier suite in OUT_DIR (its files are deleted "
        "first; a folder holding other files is refused)."),
    max_pixels: int = typer.Option(
        None, "--max-pixels", min=1, help="Refuse clean images with more pixels than this, read "
        "from the file header (default: what the available memory holds)."),
) -> None:
    """Degrade every clean image with each combination; write 8-bit PNG input/target folders
    and manifest.json / manifest.csv. The same arguments give byte-identical files."""
    from interir.data.synthetic import synthesize_suite
    from interir.degradations.pipeline import parse_combinations, parse_levels
    from interir.utils.files import OutputPathError
    from interir.utils.io import ImageReadError, pixel_limit

    try:
        combos = parse_combinations(combinations)
        fixed = parse_levels(levels)
        ranges = parse_levels(max_levels) if max_levels else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not clean_dir.is_dir():
        raise typer.BadParameter(f"clean folder '{clean_dir}' does not exist")

    if threads < 1:
        raise typer.BadParameter("--threads must be >= 1")
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if quiet or (now - last[0] < 1.0 and done != total):
            return
        last[0] = now
        rate = done / max(now - start, 1e-9)
        eta = (total - done) / max(rate, 1e-9)
        print(f"[{done:>5}/{total}] {rate:6.1f} img/s  eta {eta:5.0f}s  {message}",
              file=sys.stderr, flush=True)

    try:
        with pixel_limit(max_pixels):
            manifest = synthesize_suite(clean_dir, out_dir, seed, combos, fixed or None, ranges,
                                        progress, overwrite=overwrite)
    except (FileExistsError, OutputPathError, ImageReadError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    n = len(manifest["images"])
    typer.echo(
        f"wrote {n} pairs ({manifest['num_images']} images x {len(combos)} combinations) to "
        f"{out_dir} in {time.perf_counter() - start:.1f}s; manifest: {out_dir / 'manifest.json'}"
    )
