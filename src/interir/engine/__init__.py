"""Training, evaluation and checkpoint engine.

Importing :mod:`interir.engine` is cheap: it exposes the checkpoint API directly; the trainer
(:func:`interir.engine.train.train`) is imported on first use.
"""

from __future__ import annotations

from interir.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    load_training_state,
    load_weights_into,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "load_training_state",
    "load_weights_into",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]


def __getattr__(name: str):
    if name == "train":
        from interir.engine.train import train

        return train
    raise AttributeError(f"module 'interir.engine' has no attribute {name!r}")
