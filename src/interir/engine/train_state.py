"""``TrainState``: everything the training loop changes; how it is built, resumed and saved.

:func:`build_state` makes the state of a new session from the config (model, optimizer, schedule,
grad scaler, EMA, loss); :func:`resume_state` loads ``checkpoints/last`` into it;
:func:`save_last` and :func:`save_best` write it back. One optimizer step on it is
:func:`interir.engine.train.train_step`.

``checkpoints/last`` holds the weights, the EMA weights, the optimizer, scheduler and scaler
states, the step, and ``extra``: the global RNG states, the best validation, the EMA update count,
the training seconds so far, the world size, the global batch and the seed. Runs saved by earlier
versions resume from that layout (and from the optimizer state's parameter order, fixed by the
model's registration order and :func:`interir.engine.optim.parameter_groups`): keep both.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from interir.config import TrainConfig
from interir.engine import checkpoint as ckpt
from interir.engine.ema import ModelEMA
from interir.engine.optim import build_optimizer, build_scheduler, mixed_precision
from interir.losses import RestorationLoss
from interir.models.unfolding import set_stage_checkpointing
from interir.registry import create_model
from interir.utils.seed import capture_rng_state

__all__ = ["TrainState", "build_state", "resume_state", "save_last", "save_best"]

log = logging.getLogger("interir.train")


@dataclass
class TrainState:
    """What a training session holds and the loop changes.

    Attributes:
        model: the network (never wrapped); ``train_model`` is what the loop calls (the model,
            or its ``DistributedDataParallel`` wrapper under torchrun).
        optimizer, scheduler, criterion: Adam/AdamW, the per-step LR schedule, the loss.
        params: the trainable parameters, whose gradient norm is clipped to ``grad_clip``.
        ema, scaler, autocast, amp_mode: EMA of the weights, fp16 grad scaler, autocast factory
            and its description (``None``/``"off"`` when unused).
        step: optimizer steps done (all sessions); ``start_step``: where this session began.
        best: ``{"step", "psnr", "ssim"}`` of the best validation, or ``None``.
        last_val, last_val_step: the latest validation's scores and step.
        last_saved_step: the step ``checkpoints/last`` holds (-1: none this run).
        elapsed_before, train_time: training seconds of the earlier sessions and of this one
            (steps only: no validation, no checkpoint writing).
        saved_rng: the global RNG states a resume restores once start-up is done.
    """

    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    params: list[nn.Parameter]
    grad_clip: float | None = None
    ema: ModelEMA | None = None
    scaler: torch.amp.GradScaler | None = None
    autocast: Callable[[], ContextManager] | None = None
    amp_mode: str = "off"
    step: int = 0
    start_step: int = 0
    best: dict[str, Any] | None = None
    last_val: dict[str, float] = field(default_factory=dict)
    last_val_step: int = -1
    last_saved_step: int = -1
    elapsed_before: float = 0.0
    train_time: float = 0.0
    saved_rng: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float:
        """Training seconds of the whole run so far."""
        return self.elapsed_before + self.train_time

    def autocast_context(self) -> ContextManager:
        """Mixed precision for the forward pass, or nothing."""
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()


def build_state(cfg: TrainConfig, device: torch.device) -> TrainState:
    """A new session's state: the model (``train.checkpoint_stages`` applied, ``train.init_from``
    loaded, on ``device``), optimizer, schedule, mixed precision, EMA and loss of ``cfg``.
    Seed the global RNGs first: the model's initialisation draws from them."""
    model = _build_model(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    autocast, scaler, amp_mode = mixed_precision(cfg, device)
    ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    criterion = RestorationLoss(cfg.loss.fft_weight, cfg.loss.fft_norm, cfg.loss.pixel)
    return TrainState(
        model=model, train_model=model, optimizer=optimizer, scheduler=scheduler,
        criterion=criterion, params=[p for p in model.parameters() if p.requires_grad],
        grad_clip=cfg.optim.grad_clip, ema=ema, scaler=scaler, autocast=autocast, amp_mode=amp_mode,
    )


def _build_model(cfg: TrainConfig) -> nn.Module:
    t_cfg = cfg.train
    model = create_model(cfg.model.name, **cfg.model.overrides)
    if t_cfg.checkpoint_stages and not set_stage_checkpointing(model, True):
        raise ValueError(f"train.checkpoint_stages=true: model {cfg.model.name!r} has no unfolded "
                         "stages to checkpoint; set it to false")
    if t_cfg.init_from:
        left = ckpt.load_weights_into(model, t_cfg.init_from, use_ema=True,
                                      allow_missing=t_cfg.init_missing_ok)
        log.info("initialised weights from %s", t_cfg.init_from)
        if left:
            log.info("  kept at their initialisation (not in %s): %s", t_cfg.init_from, ", ".join(left))
    return model


def resume_state(state: TrainState, src: Path, world_size: int) -> None:
    """Load the checkpoint folder ``src`` (weights, EMA, optimizer, schedule, scaler, step, best,
    elapsed time) into ``state``; its RNG states go to ``state.saved_rng``, restored later."""
    checkpoint = ckpt.load_checkpoint(src, map_location="cpu")
    ckpt.load_weights_into(state.model, checkpoint)
    saved = ckpt.load_training_state(src, map_location="cpu")
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    state.step = state.start_step = state.last_saved_step = int(saved["step"])
    extra = saved.get("extra", {})
    if state.ema is not None:
        if checkpoint.ema_state_dict is not None:
            state.ema.load_state_dict(checkpoint.ema_state_dict,
                                      updates=int(extra.get("ema_updates", state.step)))
        else:
            log.warning("the checkpoint has no EMA weights; the average restarts from the "
                        "current weights")
    state.best = extra.get("best")
    state.elapsed_before = float(extra.get("elapsed_s", 0.0))
    state.saved_rng = extra.get("rng")
    if extra.get("world_size", world_size) != world_size:
        log.warning("resuming with %d processes where the checkpoint used %s: same data and "
                    "degradations, but gradient sums are reduced in another order (results differ "
                    "by rounding)",
                    world_size, extra.get("world_size"))


def save_last(state: TrainState, run_dir: Path, cfg: TrainConfig, world_size: int) -> None:
    """Write ``checkpoints/last``: weights, EMA, optimizer, schedule, scaler, step and ``extra``
    (global RNG states, best validation, EMA updates, elapsed seconds, world size, batch, seed)."""
    ema = state.ema
    extra = {
        "rng": capture_rng_state(),
        "best": state.best,
        "ema_updates": ema.updates if ema is not None else 0,
        "elapsed_s": state.elapsed,
        "world_size": world_size,
        "global_batch": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }
    ckpt.save_checkpoint(
        run_dir / "checkpoints" / "last", state.model,
        ema=ema.state_dict() if ema is not None else None, optimizer=state.optimizer,
        scheduler=state.scheduler, scaler=state.scaler, step=state.step, extra_state=extra,
        metrics={"val": state.last_val, "val_step": state.last_val_step} if state.last_val else {},
    )


def save_best(state: TrainState, run_dir: Path) -> None:
    """Write ``checkpoints/best``: the weights (and EMA weights) at ``state.best``."""
    ema = state.ema.state_dict() if state.ema is not None else None
    ckpt.save_checkpoint(run_dir / "checkpoints" / "best", state.model, ema=ema, step=state.step,
                         metrics=state.best)
