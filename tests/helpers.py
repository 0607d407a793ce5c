"""Helpers shared by tests (import as ``from helpers import ...``; pytest puts tests/ on sys.path)."""

from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner


def act_like_trained(model: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Move every all-zero parameter off zero, as training would, and return ``model``.

    A fresh core-v2/v3 InterIR returns its input exactly (zero-initialised stage gates, EPBlock
    ``beta``/``gamma``, zero-initialised last convolutions), so a random-weight network standing in
    for a trained one would make tests of batching, seeding or clamping pass whatever the code does.
    The new values are ``N(0, scale^2)`` from a generator seeded with ``seed`` (same model, same
    values); parameters that are not all zero are left as they are.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() and not torch.any(param):
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


class Half(nn.Module):
    """Cheap stand-in network: ``x / 2`` (so a replaced file is visibly different)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


def run_cli(*args: object):
    """Invoke the ``interir`` command line in-process; returns click's ``Result``."""
    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    return CliRunner().invoke(app, [str(a) for a in args])


def tiny_train_config(tmp_path: Path, name: str, *overrides: str, data: Path | None = None):
    """A 4-step training config of a one-stage width-8 interir-tiny on the test photos (no
    validation, no EMA, no checkpoints), writing under ``tmp_path/runs/name``."""
    from interir.config import load_config

    photos = data or Path(__file__).parent / "data"
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 1}},
        "data": {"train_roots": [str(photos)], "patch_size": 32, "val": {"kind": "none"}},
        "train": {"iterations": 4, "batch_size": 2, "threads": 1, "ema_decay": None,
                  "log_every": 2, "val_every": 0, "ckpt_every": 0, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": name, "tensorboard": "off"},
    }
    return load_config(None, list(overrides), base=base)
