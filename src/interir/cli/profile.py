"""``interir profile``: parameters, multiply-adds, latency and peak memory (the paper's Table 8)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app


@app.command("profile")
def profile_command(
    model: Annotated[list[str], typer.Option(
        "--model", "-m",
        help="Registered name (`interir models`), checkpoint, or 'default'; repeatable.")] = ["interir"],  # noqa: B006
    sizes: Annotated[str, typer.Option(
        "--sizes", help="Comma-separated input sizes, N or HxW.")] = "256,512,1024",
    runs: Annotated[int, typer.Option("--runs", min=0, help="Timed runs per size (median); 0 = no timing.")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 1,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "cpu",
    depth: Annotated[int, typer.Option(
        "--depth", min=0, help="Per-module rows down to this depth (1: stages; 2: RESM/DMUM/MUM).")] = 1,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size.")] = 1,
    memory: Annotated[bool, typer.Option(
        "--memory/--no-memory", help="Measure peak memory (a fresh process per size on the CPU).")] = True,
    module_latency: Annotated[bool, typer.Option(
        "--module-latency/--no-module-latency", help="Time each per-module row (one more set of runs).")] = True,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report(s) as JSON here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write the Markdown table(s) here.")] = None,
) -> None:
    """Profile models: parameters, MACs (convs + matmuls, FFTs by formula), latency, peak memory."""
    import json

    import torch

    from interir.loading import load_model
    from interir.profiling import parse_sizes, profile_model

    try:
        size_list = parse_sizes(sizes)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--sizes") from err
    if threads:
        torch.set_num_threads(threads)
    reports = []
    for spec in model:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # random weights are fine for measuring cost
                net = load_model(spec, "cpu")
            report = profile_model(
                net, size_list, runs=runs, warmup=warmup, device=device, depth=depth, batch=batch,
                memory=memory, module_latency=module_latency, name=spec,
            )
        except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
            typer.echo(f"error: {spec}: {err}", err=True)
            raise typer.Exit(code=1) from err
        reports.append(report)
        typer.echo(report.to_markdown())
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"Wrote {json_out}")
    if md_out:
        md_out.parent.mkdir(parents=True, exist_ok=True)
        md_out.write_text("\n".join(r.to_markdown() for r in reports))
        typer.echo(f"Wrote {md_out}")
