"""``interir train CONFIG.yaml [key=value ...]``: train with the engine in :mod:`interir.engine.train`.

Runs the same way on one process and under ``torchrun --nproc_per_node=N -m interir.cli train ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app


@app.command(
    "train",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples: interir train configs/cpu-small.yaml optim.lr=1e-4 train.batch_size=8 | "
           "interir train configs/cpu-small.yaml --resume | "
           "torchrun --nproc_per_node=2 -m interir.cli train configs/cpu-tiny.yaml",
)
def train_command(
    config: Annotated[Path, typer.Argument(
        help="YAML config (see configs/), or a run folder to reuse its saved config.yaml.",
        show_default=False)],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="key=value overrides applied on top of the file, e.g. optim.lr=1e-4 "
             "train.iterations=2000 model.overrides.width=24 data.train_roots=[a,b].",
        show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run folder's checkpoints/last (weights, optimizer, "
                         "schedule, data position, RNG).")] = False,
    resume_from: Annotated[Optional[Path], typer.Option(
        "--resume-from", help="Continue from this checkpoint folder instead.",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Delete an earlier run's files in the run folder and start over.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(
        "--max-minutes", min=0.01, help="Stop cleanly with a checkpoint after this much time "
                                        "(same as train.max_minutes).", show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", min=1, help="Stop this session after N steps with a checkpoint (smoke "
                                   "tests; the schedule still spans train.iterations).",
        show_default=False)] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved configuration and exit.")] = False,
) -> None:
    """Train a restoration network: the paper's recipe, resumable, distributed under torchrun."""
    from interir.config import ConfigError, config_to_yaml, load_config
    from interir.engine.checkpoint import CheckpointError

    items = list(overrides or [])
    if max_minutes is not None:
        items.append(f"train.max_minutes={max_minutes}")
    path = config
    if config.is_dir():
        path = config / "config.yaml"
        if not path.is_file():
            raise typer.BadParameter(f"'{config}' is a folder without config.yaml", param_hint="CONFIG")
    try:
        cfg = load_config(path, items)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if print_config:
        typer.echo(config_to_yaml(cfg), nl=False)
        return

    from interir.engine.train import train

    try:
        result = train(cfg, resume=resume_from if resume_from is not None else resume,
                       overwrite=overwrite, max_steps=max_steps)
    except (FileExistsError, FileNotFoundError, CheckpointError, ConfigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except FloatingPointError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(3) from None
    if result.reason != "completed":
        typer.echo(f"stopped ({result.reason}) at step {result.step}/{result.iterations}; "
                   f"continue with: interir train {config} --resume", err=True)
