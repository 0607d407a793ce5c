"""``interir models``: list the registered networks and the shipped pretrained weights."""

import typer

from interir.cli.app import app
from interir.pretrained import list_pretrained, pretrained_architecture
from interir.registry import describe_model, list_models


@app.command("models")
def models_command() -> None:
    """List the shipped pretrained models, then every architecture (random weights unless marked)."""
    shipped = {name: pretrained_architecture(name) for name in list_pretrained()}
    typer.echo("Pretrained (trained weights inside the package; pass the name to -m or load_pretrained):")
    for name, arch in shipped.items():
        typer.echo(f"  {name:22s} {arch or '?'}")
    trained = set(shipped.values())
    typer.echo("Architectures (create_model(NAME) builds them with random weights):")
    for name in list_models():
        mark = "[trained weights shipped]" if name in trained else ""
        typer.echo(f"  {name:22s} {describe_model(name)} {mark}".rstrip())
