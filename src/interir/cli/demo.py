"""``interir demo``: degrade a shipped photo, restore it with the default model, show both."""

from pathlib import Path
from typing import Optional

import typer

from interir.cli.app import app


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo_output"), "-o", "--out", help="Output folder."),
    model: str = typer.Option("default", "--model", "-m", help="'default', a run/checkpoint folder or a model name."),
    seed: int = typer.Option(0, help="Seed of the haze+rain+noise draw."),
    image: Optional[Path] = typer.Option(None, help="Use this clean image instead of the shipped photo."),
) -> None:
    """Apply haze+rain+noise to a CC0 photo (fixed seed), restore it, write a side-by-side PNG."""
    from interir.demo import DEMO_LEVELS, run_demo

    levels = ", ".join(f"{k} {v:g}" for k, v in DEMO_LEVELS.items())
    typer.echo(f"degrading the demo photo with haze+rain+noise ({levels}; seed {seed}), restoring with '{model}'")
    result = run_demo(out, model, seed, image)
    typer.echo(f"degraded: PSNR {result.degraded_psnr:6.2f} dB  SSIM {result.degraded_ssim:.4f}")
    typer.echo(f"restored: PSNR {result.restored_psnr:6.2f} dB  SSIM {result.restored_ssim:.4f}")
    typer.echo(f"side-by-side (degraded | restored | clean): {result.sheet}  ({result.seconds:.1f} s)")
