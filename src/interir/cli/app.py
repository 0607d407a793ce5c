"""The typer application object shared by the command modules of :mod:`interir.cli`."""

import typer

app = typer.Typer(
    name="interir",
    help="InterIR: restore images hit by haze, rain and noise; train, evaluate, explain, profile.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
