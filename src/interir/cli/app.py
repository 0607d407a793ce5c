"""The typer application object shared by the command modules of :mod:`interir.cli`."""

from importlib import metadata

import typer

app = typer.Typer(
    name="interir",
    help="InterIR: restore images hit by haze, rain and noise; train, evaluate, explain, profile.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def installed_version() -> str:
    """The installed distribution's version (the package's ``__version__`` when not installed)."""
    try:
        return metadata.version("interir")
    except metadata.PackageNotFoundError:
        from interir import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"interir {installed_version()}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the installed version and exit."),
) -> None:
    """Options that come before the command."""
