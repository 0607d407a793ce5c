"""Training, evaluation and checkpoint engine.

Importing :mod:`interir.engine` is cheap: it exposes the checkpoint file API; the trainer is
:func:`interir.engine.train.train` and the evaluator :func:`interir.engine.evaluate.evaluate`,
imported from their modules.
"""

from __future__ import annotations

from interir.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    load_weights_into,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_training_state",
    "load_weights_into",
    "resolve_checkpoint",
    "save_checkpoint",
]
