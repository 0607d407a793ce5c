"""``interir models``: list the registered networks."""

import typer

from interir.cli.app import app
from interir.registry import describe_model, list_models


@app.command("models")
def models_command() -> None:
    """List the registered model names with a one-line description each."""
    for name in list_models():
        typer.echo(f"{name:20s} {describe_model(name)}")
