"""``interir report``: put the summary tables of several ``interir eval`` runs into one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app


@app.command("report")
def report_command(
    summaries: Annotated[list[Path], typer.Argument(
        help="summary.json files, or the eval output folders that hold them.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the table to this Markdown file (and a .json beside it).")] = None,
    title: Annotated[str, typer.Option("--title", help="Heading of the table.")] = "Comparison",
    check: Annotated[Optional[str], typer.Option(
        "--check", help="A method (row) to test against the rivals: the table ends with every "
                        "column where its PSNR is not above theirs.")] = None,
    rivals: Annotated[Optional[str], typer.Option(
        "--rivals", help="Comma-separated rows to test --check against (default: all others).")] = None,
) -> None:
    """Combine eval summaries (e.g. CBSD68-MDIR on RGB and Rain100H/SOTS on Y) into one table."""
    from interir.metrics.report import SummaryTable, combine_tables
    from interir.utils.files import atomic_write_text

    tables = []
    for path in summaries:
        file = path / "summary.json" if path.is_dir() else path
        if not file.is_file():
            typer.echo(f"error: {file} not found: give summary.json files written by `interir eval` "
                       "or the folders that hold them", err=True)
            raise typer.Exit(code=1)
        try:
            tables.append(SummaryTable.from_json(file.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            typer.echo(f"error: {file} is not an `interir eval` summary ({err})", err=True)
            raise typer.Exit(code=1) from err
    try:
        combined = combine_tables(tables, title=title)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    rival_list = [r.strip() for r in rivals.split(",")] if rivals else None
    for name in ([check] if check else []) + (rival_list or []):
        if name not in combined.rows:
            typer.echo(f"error: no row {name!r}; the rows are {combined.rows}", err=True)
            raise typer.Exit(code=1)
    text = combined.to_markdown(check=check, rivals=rival_list)
    typer.echo(text)
    if out is not None:
        atomic_write_text(out, text)
        atomic_write_text(out.with_suffix(".json"), json.dumps(combined.to_dict(), indent=2) + "\n")
        typer.echo(f"Wrote {out} and {out.with_suffix('.json')}")
