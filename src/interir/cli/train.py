"""``interir train CONFIG [key=value ...]``: train with the engine in :mod:`interir.engine.train`.

CONFIG is a YAML file, a run folder, or the name of a shipped config (``interir train cpu-small``).

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
    # Help texts are Rich markup: a literal "[" is written "\\[" or Rich takes "[a,b]" for a tag.
    epilog="Examples: interir train cpu-small optim.lr=1e-4 train.batch_size=8 | "
           "interir train cpu-tiny data.train_roots=\\[my/photos] data.exclude=\\[] "
           "data.val.kind=none | "
           "interir train configs/cpu-small.yaml --resume | "
           "torchrun --nproc_per_node=2 -m interir.cli train cpu-tiny",
)
def train_command(
    config: Annotated[Optional[Path], typer.Argument(
        help="YAML file, a run folder (reuses its config.yaml), or a shipped config by name: "
             "cpu-tiny, cpu-small, cpu-default, paper-mdir, ... (see --list-configs).",
        show_default=False)] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="key=value overrides applied on top of the file, e.g. optim.lr=1e-4 "
             "train.iterations=2000 model.overrides.width=24 data.train_roots=\\[a,b].",
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
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help="torch CPU threads per process (same as train.threads). Default: "
                                 "train.threads of the config, else $INTERIR_THREADS, else 1 "
                                 "(never much slower, far faster on a busy machine; 0 keeps "
                                 "torch's own choice, all cores).", show_default=False)] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved configuration and exit.")] = False,
    list_configs: Annotated[bool, typer.Option(
        "--list-configs", help="Print the names of the shipped configs and exit.")] = False,
) -> None:
    """Train a restoration network: the paper's recipe, resumable, distributed under torchrun."""
    from interir.config import ConfigError, config_to_yaml, list_shipped_configs, load_train_config
    from interir.engine.checkpoint import CheckpointError

    if list_configs:
        typer.echo("\n".join(list_shipped_configs()))
        return
    if config is None:
        raise typer.BadParameter("name a config file, run folder or shipped config",
                                 param_hint="CONFIG")
    items = list(overrides or [])
    if max_minutes is not None:
        items.append(f"train.max_minutes={max_minutes}")
    if threads is not None:
        items.append(f"train.threads={threads}")
    try:
        cfg = load_train_config(config, items)
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
                   f"continue with: {result.resume_command}", err=True)
