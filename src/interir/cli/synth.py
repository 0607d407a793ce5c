"""``interir synth``: write the seeded seven-combination synthetic test sets."""

from __future__ import annotations

from pathlib import Path

import typer

from interir.cli.app import app
from interir.utils.progress import ProgressDisplay

#: ``--seed`` when not given: the seed of the canonical CBSD68-MDIR test set (printed, and
#: recorded in manifest.json like any other seed).
DEFAULT_SEED = 2025


def clean_images(paths: list[Path]) -> list[Path]:
    """Image files from files and folders (a folder's images, not its sub-folders), in order,
    each file once. Raises ``typer.BadParameter`` for a missing path, a file that is not an image
    and a folder without images."""
    from interir.utils.io import IMAGE_EXTENSIONS, list_images

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise typer.BadParameter(f"folder '{path}' holds no images "
                                         f"({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise typer.BadParameter(f"'{path}' is not an image file "
                                         f"({', '.join(IMAGE_EXTENSIONS)})")
            files.append(path)
        else:
            raise typer.BadParameter(f"clean image or folder '{path}' does not exist")
    unique = {str(f.resolve()): f for f in reversed(files)}  # a file named twice counts once
    return [f for f in files if unique.get(str(f.resolve())) is f]


@app.command("synth")
def synth_command(
    clean: list[Path] = typer.Argument(
        ..., help="Clean images: folders of images (PNG/JPEG/TIFF/BMP/WebP) and/or single image "
        "files, in any mix; names must be unique by stem.", show_default=False),
    out_dir: Path = typer.Argument(
        ..., help="Output folder: new or empty, or an earlier suite to replace with --overwrite.",
        show_default=False),
    seed: int = typer.Option(
        DEFAULT_SEED, "--seed", help="Base seed; printed and recorded in manifest.json. The "
        "default is the canonical CBSD68-MDIR seed."
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
    and manifest.json / manifest.csv. The same arguments (and seed) give byte-identical files."""
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
    files = clean_images(clean)
    if threads < 1:
        raise typer.BadParameter("--threads must be >= 1")
    import torch

    torch.set_num_threads(threads)
    typer.echo(f"seed {seed}" + ("" if seed != DEFAULT_SEED else " (the default; --seed N for "
                                 "another draw)"))
    display = ProgressDisplay(len(files) * len(combos), "pairs", mode="off" if quiet else "auto")
    try:
        with pixel_limit(max_pixels), display:
            manifest = synthesize_suite(files, out_dir, seed, combos, fixed or None, ranges,
                                        display.update, overwrite=overwrite)
    except (FileExistsError, OutputPathError, ImageReadError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    n = len(manifest["images"])
    typer.echo(
        f"wrote {n} pairs ({manifest['num_images']} images x {len(combos)} combinations) to "
        f"{out_dir} in {display.elapsed:.1f}s; seed {manifest['seed']}; manifest: "
        f"{out_dir / 'manifest.json'}"
    )
