"""Help texts and option checks shared by several commands (torch-free: every command module
imports this at start-up)."""

from __future__ import annotations

import typer

#: The ``--threads`` help; the rule itself is :mod:`interir.utils.threads`.
THREADS_HELP = (
    "torch CPU threads; 0 keeps torch's own choice (all cores). Default: $INTERIR_THREADS, else 1, "
    "chosen by measurement (a 1-MP photo on 2 cores): on an idle machine all cores are 1.5x "
    "faster, with one core busy they are 2x slower; 1 is never much worse. Pass the core count "
    "on a machine you know is idle."
)

#: Restatements of :mod:`interir.inference.settings`'s defaults, so that ``interir --help`` and
#: ``--version`` need not import torch (tests/test_user_errors.py checks they are equal).
DEFAULT_CHANNELS_LAST = True
DEFAULT_PRECISION = "auto"
PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("torch", "onnx")
DEFAULT_BACKEND = "torch"


def check_backend(backend: str) -> None:
    """Refuse an unknown ``--backend``, and ``onnx`` without onnxruntime, before any model loads."""
    if backend not in BACKENDS:
        raise typer.BadParameter(f"use one of {', '.join(BACKENDS)}", param_hint="--backend")
    if backend == "onnx":
        from interir.inference.onnx_backend import require_onnxruntime  # lazy: imports torch

        try:
            require_onnxruntime()
        except ImportError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None
