"""The optimizer, the learning-rate schedule and mixed precision of a training run.

- :func:`parameter_groups` - one group, or the zero-initialised gains in a faster second group
  (``optim.gain_lr_scale``).
- :func:`build_optimizer` - Adam or AdamW as ``optim`` says.
- :func:`lr_factor` / :func:`build_scheduler` - cosine annealing from ``optim.lr`` to
  ``optim.lr_final`` over ``train.iterations``, with an optional linear warm-up.
- :func:`mixed_precision` - autocast and grad scaler for ``train.amp`` on CUDA.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from interir.config import TrainConfig

__all__ = ["GAIN_SUFFIXES", "parameter_groups", "build_optimizer", "lr_factor", "build_scheduler",
           "mixed_precision"]

GAIN_SUFFIXES = ("update_gate", ".beta", ".gamma", "step_size")


def parameter_groups(model: nn.Module, lr: float, gain_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one group, or (``gain_lr_scale != 1``) the scalar gains that
    start at zero (names ending in :data:`GAIN_SUFFIXES`) in a second group at ``lr * scale``.

    The order of the parameters fixes the optimizer state's layout in checkpoints: keep it.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if gain_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable]}]
    gains = [p for name, p in trainable if name.endswith(GAIN_SUFFIXES)]
    rest = [p for name, p in trainable if not name.endswith(GAIN_SUFFIXES)]
    return [{"params": rest}, {"params": gains, "lr": lr * gain_lr_scale}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (or AdamW) over :func:`parameter_groups` with the settings of ``cfg.optim``."""
    o = cfg.optim
    opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return opt_cls(parameter_groups(model, o.lr, o.gain_lr_scale), lr=o.lr, betas=tuple(o.betas),
                   eps=o.eps, weight_decay=o.weight_decay)


def lr_factor(step: int, iterations: int, lr: float, lr_final: float, schedule: str = "cosine",
              warmup: int = 0) -> float:
    """Learning-rate multiplier after ``step`` completed steps (``lr * factor`` is the rate).

    Cosine: ``lr_final + (lr - lr_final) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1
    over ``iterations - warmup`` steps; linear warm-up from ``lr / warmup`` before it.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, iterations - warmup))
    rate = lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * t))
    return rate / lr


def build_scheduler(optimizer: torch.optim.Optimizer,
                    cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule of ``cfg`` (stepped once per optimizer step)."""
    o, iterations = cfg.optim, cfg.train.iterations
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, iterations, o.lr, o.lr_final, o.schedule, o.warmup_iters)
    )


def mixed_precision(cfg: TrainConfig, device: torch.device) -> tuple[
        Callable[[], Any] | None, torch.amp.GradScaler | None, str]:
    """``(autocast factory or None, GradScaler or None, description)`` for ``train.amp``: off
    away from CUDA; ``auto`` is bf16 where the GPU supports it, else fp16 with a grad scaler."""
    if device.type != "cuda" or cfg.train.amp == "off":
        return None, None, "off"
    mode = cfg.train.amp
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16

    def factory():
        return torch.autocast(device_type="cuda", dtype=dtype)

    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    return factory, scaler, mode
