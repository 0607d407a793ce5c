"""Command-line interface: ``interir <command>``.

Each command lives in its own module (``interir/cli/<command>.py``) and only parses arguments and
wires library calls together; the logic is in the library. Importing a command module registers
its command on :data:`interir.cli.app.app`.
"""

from __future__ import annotations

import importlib

from interir.cli.app import app

# One module per command group; each registers itself on `app` when imported.
_COMMAND_MODULES = ["models", "synth", "train", "evaluate", "restore", "profile", "export", "explain", "demo", "report",
                    "webapp"]


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"interir.cli.{name}")


def main() -> None:
    """Console-script entry point."""
    _load_commands()
    app()
