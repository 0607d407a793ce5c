"""The training engine: one loop for a laptop CPU, one GPU, or many GPUs/CPUs under torchrun.

``train(config)`` runs the paper's recipe (design §5): random clean patches with flips, degraded
on the fly by the seven-combination pipeline (or aligned patches of real degraded/clean pairs),
loss ``L1 + 0.1 L1(FFT)``, Adam with cosine annealing from ``optim.lr`` to ``optim.lr_final``,
optional gradient clipping and EMA, mixed precision on CUDA. It writes a run folder::

    runs/<name>/
      config.yaml          the resolved configuration
      run.json             interir version, git commit, seed, environment, one entry per session
      train.log            the log lines
      metrics.csv/.jsonl   training rows (loss, lr, images/s) and validation rows (PSNR, SSIM)
      tb/                  TensorBoard events (when tensorboard is installed)
      checkpoints/last/    weights + training state, every train.ckpt_every steps and at the end
      checkpoints/best/    weights with the best validation PSNR
      summary.json         final step, stop reason, best validation, throughput
      replicas.json        under torchrun: digest of every replica's weights at the end

Exact resume: every random draw is a fixed function of ``(train.seed, position)`` -- the patch
order (one permutation per epoch), each patch's crop and flips, each step's degradations (drawn
for the whole global batch; each process keeps its slice, so 1 and N processes see the same
batches) -- and the optimizer, scheduler, scaler, EMA and global RNG states are checkpointed; so
a run stopped after ``k`` steps and resumed gives the same weights as an uninterrupted run (same
machine, same number of processes and threads).

Distributed: under ``torchrun --nproc_per_node=N`` the model is wrapped in
``DistributedDataParallel`` (NCCL on GPUs, gloo on CPU); each process gets ``batch_size / N``
samples of every global batch (a rank-aware sampler replaces ``DistributedSampler`` so the data
position can resume mid-epoch); only rank 0 writes files.

This module holds the session (start-up, loop, end) and :func:`train_step`; the parts live in:

- :mod:`interir.engine.train_state` - :class:`TrainState`, built, resumed and saved;
- :mod:`interir.engine.optim` - optimizer, parameter groups, LR schedule, mixed precision;
- :mod:`interir.data.training` - training dataset, degradation pipeline, resumable sample stream
  and each step's batch;
- :mod:`interir.data.validation_pairs` and :mod:`interir.engine.validation` - the fixed
  validation pairs, and scoring a model on them;
- :mod:`interir.engine.run_folder` - run folder checks, ``config.yaml``, ``run.json``,
  ``summary.json``, the resume command;
- :mod:`interir.engine.metric_log` - metric files, interval means, progress bar, ``train.log``;
- :mod:`interir.engine.stopping` - stop requests (signals), time budget, step limit.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from interir.config import TrainConfig, load_config, validate_config
from interir.data.prefetch import Prefetcher, prefetch_wanted
from interir.data.training import TrainingBatches
from interir.data.validation_pairs import build_val_pairs
from interir.engine.distributed import (DistInfo, barrier, check_replicas, cleanup_distributed,
                                        init_distributed, per_rank_batch)
from interir.engine.metric_log import IntervalMeter, MetricsLog, Progress, format_eta, run_logging
from interir.engine.run_folder import (clean_interrupted_writes, compare_saved_config,
                                       open_run_folder, resume_command, resume_source, run_folder,
                                       write_json, write_session_start)
from interir.engine.stopping import SessionLimits, StopFlag
from interir.engine.train_state import TrainState, build_state, resume_state, save_best, save_last
from interir.engine.validation import per_set_text, validate
from interir.utils.seed import restore_rng_state, seed_everything
from interir.utils.threads import thread_count

__all__ = ["train", "train_step", "TrainResult"]

log = logging.getLogger("interir.train")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; files are written by rank 0 only).

    Attributes:
        run_dir: the run folder.
        step: optimizer steps done in total (across resumed sessions).
        iterations: the configured total.
        reason: ``"completed"``, ``"time_budget"``, ``"max_steps"`` or ``"signal"``.
        best: ``{"step", "psnr", "ssim"}`` of the best validation, or ``None``.
        last_checkpoint: ``run_dir/checkpoints/last``.
        images_per_s: mean training throughput of this session (global images per second, first
            log interval excluded as warm-up when there are several), or ``None``.
        replica_digests: under torchrun, the SHA-256 of each replica's weights at the end.
        world_size: number of processes.
    """

    run_dir: Path
    step: int
    iterations: int
    reason: str
    best: dict[str, Any] | None = None
    last_checkpoint: Path | None = None
    images_per_s: float | None = None
    replica_digests: list[str] | None = None
    world_size: int = 1

    @property
    def completed(self) -> bool:
        return self.step >= self.iterations

    @property
    def resume_command(self) -> str:
        """The command that continues this run (see :func:`resume_command`)."""
        return resume_command(self.run_dir, self.world_size)


@dataclass
class _Session:
    """What a session sets up around the loop: fixed while it runs (the meter aside)."""

    cfg: TrainConfig
    di: DistInfo
    run_dir: Path
    batches: TrainingBatches | Prefetcher
    val_pairs: list[dict[str, Any]]
    eval_model: nn.Module | None  # receives the EMA weights for validation (rank 0)
    metrics: MetricsLog | None  # rank 0
    progress: Progress
    limits: SessionLimits
    meter: IntervalMeter


def train_step(state: TrainState, inputs: torch.Tensor, target: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on one batch: forward, loss, backward, clipping, update, schedule, EMA.

    Returns:
        ``(losses, grad_norm)``: ``[loss, l1, fft]`` (detached, on the device) and the gradient
        norm before clipping (``None`` without ``optim.grad_clip``).

    Gradient accumulation changes this function only: zero the gradients, run the forward pass
    and ``backward()`` of ``loss / k`` on each of ``k`` slices of the batch (under DDP inside
    ``state.train_model.no_sync()`` for all but the last), then clip, step, schedule and update
    the EMA once, as below. The loop, the state and the checkpoints stay as they are.
    """
    with state.autocast_context():
        pred = state.train_model(inputs)
    loss, parts = state.criterion(pred, target, return_parts=True)
    optimizer, scaler = state.optimizer, state.scaler
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    grad_norm = None
    if state.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(state.params, state.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    return torch.stack([loss.detach().float(), parts["l1"].float(), parts["fft"].float()]), grad_norm


def _as_config(config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return validate_config(config)
    return load_config(config)


def train(
    config: TrainConfig | dict | str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Train a model as ``config`` says (see the module docstring for what is written).

    Args:
        config: a :class:`interir.config.TrainConfig`, a dict, or a YAML path.
        resume: continue the run folder's ``checkpoints/last`` (``True``), or a given checkpoint
            folder (a path), restoring weights, optimizer, schedule, data position and RNG states.
        overwrite: delete an earlier run's files in the run folder instead of refusing to start.
        max_steps: stop this session after this many steps (with a checkpoint), e.g. for smoke
            tests; the schedule still spans ``train.iterations``.

    Returns:
        A :class:`TrainResult`.

    Raises:
        FileExistsError / FileNotFoundError: the run folder is taken, or there is nothing to resume.
        ckpt.CheckpointError: the checkpoint to resume belongs to another architecture.
        ValueError: the global batch does not split over the processes; invalid data.
        FloatingPointError: the loss became NaN/inf.
    """
    cfg = _as_config(config)
    t_cfg = cfg.train
    # train.threads, else INTERIR_THREADS, else 1 (utils/threads.py): torch's default of all
    # cores made one step in 30 s on a busy machine where one thread made 40 (issue 30).
    with thread_count(command=t_cfg.threads):
        dist_info = init_distributed(t_cfg.device)
        try:
            return _train(cfg, dist_info, resume, overwrite, max_steps)
        finally:
            cleanup_distributed()


def _train(cfg: TrainConfig, di: DistInfo, resume: bool | str | os.PathLike, overwrite: bool,
           max_steps: int | None) -> TrainResult:
    """One session: the run folder, logging and stop handling around start-up, loop and end."""
    started = time.time()
    run_dir = run_folder(cfg)
    per_rank = per_rank_batch(cfg.train.batch_size, di.world_size)
    lock = open_run_folder(run_dir, resume, overwrite, di.is_main)  # rank 0 decides, all agree
    progress = Progress(di.is_main and sys.stderr.isatty(), cfg.train.iterations, 0)
    try:
        with run_logging(run_dir if di.is_main else None, di.is_main, progress.console), \
                StopFlag() as flag:
            budget_s = cfg.train.max_minutes * 60.0 if cfg.train.max_minutes else None
            limits = SessionLimits(flag, budget_s, max_steps, started, 0)
            state, session = _start(cfg, di, run_dir, per_rank, resume, progress, limits)
            reason = _loop(state, session)
            return _finish(state, session, reason)
    finally:
        if lock is not None:  # the session's hold on the run folder ends with it
            lock.close()


def _start(cfg: TrainConfig, di: DistInfo, run_dir: Path, per_rank: int,
           resume: bool | str | os.PathLike, progress: Progress,
           limits: SessionLimits) -> tuple[TrainState, _Session]:
    """Build (or resume) the state, the data and the validation pairs; record the session.
    The order is fixed: the global RNGs are drawn from in it (model initialisation)."""
    t_cfg, device = cfg.train, di.device
    if di.is_main:  # here, so that train.log records it
        clean_interrupted_writes(run_dir)
    barrier()  # the other processes read checkpoints/last only once it is back in place
    seed_everything(t_cfg.seed, deterministic=t_cfg.deterministic)
    if device.type == "cuda" and not t_cfg.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
    state = build_state(cfg, device)
    if resume:
        resume_state(state, resume_source(run_dir, resume), di.world_size)
        compare_saved_config(run_dir, cfg)
    limits.start_step = state.start_step
    batches = TrainingBatches(cfg, device, di.rank, di.world_size, per_rank, state.step)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", di.world_size))
    if (device.type == "cpu" or cfg.data.prefetch is True) and prefetch_wanted(cfg.data.prefetch, local_procs, torch.get_num_threads()):
        batches = Prefetcher(batches)
    val_pairs = build_val_pairs(cfg) if di.is_main else []
    if di.distributed:
        state.train_model = DistributedDataParallel(
            state.model, device_ids=[device] if device.type == "cuda" else None)
    eval_model = copy.deepcopy(state.model).eval() if (state.ema is not None and di.is_main) else None
    if state.saved_rng is not None:
        restore_rng_state(state.saved_rng)
    metrics = None
    if di.is_main:
        resumed_from = state.step if resume else None
        metrics = MetricsLog(run_dir, cfg.output.tensorboard, resumed_from)
        # Only now, with every start-up step done: a session that fails to start (missing data,
        # a damaged metrics file) records nothing and leaves the run as it was.
        write_session_start(run_dir, cfg, di, limits.started, resumed_from)
    session = _Session(cfg=cfg, di=di, run_dir=run_dir, batches=batches, val_pairs=val_pairs,
                       eval_model=eval_model, metrics=metrics, progress=progress, limits=limits,
                       meter=IntervalMeter(device, t_cfg.batch_size))
    _log_start(state, session, bool(resume))
    return state, session


def _log_start(state: TrainState, s: _Session, resumed: bool) -> None:
    cfg, di, t_cfg = s.cfg, s.di, s.cfg.train
    n_params = sum(p.numel() for p in state.model.parameters())
    log.info(
        "run %s: %s (%.3f M params) on %s x%d%s, %s %d images, patch %d, batch %d (%d per process), "
        "%d iterations%s, amp %s",
        s.run_dir, cfg.model.name, n_params / 1e6, di.device, di.world_size,
        f" ({di.backend})" if di.backend else "", s.batches.kind,
        len(s.batches), cfg.data.patch_size, t_cfg.batch_size, len(s.batches.rows),
        t_cfg.iterations, f", resuming at step {state.step}" if resumed else "", state.amp_mode,
    )
    if s.batches.mixed:
        log.info("training mix: %s", s.batches.describe_mix())
    if s.val_pairs:
        kinds = "+".join(sorted({v.kind for v in cfg.data.val_sets}))
        log.info("validation: %d %s pairs every %s steps", len(s.val_pairs), kinds,
                 t_cfg.val_every or "(end only)")


def _loop(state: TrainState, s: _Session) -> str:
    """Train until the schedule ends (then validate) or the session must stop; save
    ``checkpoints/last``. Returns the stop reason."""
    iterations, reason = s.cfg.train.iterations, "completed"
    state.train_model.train()
    with s.progress:
        while state.step < iterations:
            started = time.perf_counter()
            inputs, target = s.batches.get(state.step)
            s.meter.add(*train_step(state, inputs, target))
            state.train_time += time.perf_counter() - started
            s.progress.update(state.step)
            _after_step(state, s)
            stop = s.limits.reason(state.step, state.train_time, s.di.device) \
                if state.step < iterations else None
            if stop is not None:
                reason = stop
                break
        s.batches.close()
        # Validate at the end of the schedule only: a run interrupted and resumed then logs exactly
        # what an uninterrupted one does (same rows, same best checkpoint).
        if reason == "completed" and state.last_val_step != state.step:
            _validate(state, s)
        if state.last_saved_step != state.step:
            _save_last(state, s)
    return reason


def _after_step(state: TrainState, s: _Session) -> None:
    """The metric row, validation and checkpoint that fall on this step."""
    t_cfg, step = s.cfg.train, state.step
    if step % t_cfg.log_every == 0 or step == t_cfg.iterations:
        _log_interval(state, s)
    if t_cfg.val_every and step % t_cfg.val_every == 0 and step < t_cfg.iterations:
        _validate(state, s)
        s.meter.restart_clock()
    if t_cfg.ckpt_every and step % t_cfg.ckpt_every == 0 and step < t_cfg.iterations:
        _save_last(state, s)
        s.meter.restart_clock()


def _log_interval(state: TrainState, s: _Session) -> None:
    """The training row of the interval that ends now (rank 0 writes it)."""
    t_cfg, step = s.cfg.train, state.step
    mean, ips = s.meter.close(s.di.world_size)
    if not all(math.isfinite(v) for v in mean):
        raise FloatingPointError(
            f"the loss became {mean[0]} at step {step}. Fix: lower optim.lr, set optim.grad_clip "
            f"(e.g. 0.01), or train.amp=bf16/off; resume from the last checkpoint with --resume"
        )
    lr_now = state.optimizer.param_groups[0]["lr"]
    row = {"loss": mean[0], "l1": mean[1], "fft": mean[2], "lr": lr_now, "images_per_s": ips,
           "elapsed_s": round(state.elapsed, 3)}
    if s.meter.grad_norm is not None:
        row["grad_norm"] = float(s.meter.grad_norm)
    if s.di.is_main:
        s.metrics.write("train", step, row)
        s.progress.update(step, loss=f"{mean[0]:.4f}", lr=f"{lr_now:.2e}", ips=f"{ips:.1f}")
        if s.progress.bar is None:
            eta = (t_cfg.iterations - step) * t_cfg.batch_size / max(ips, 1e-9)
            log.info("step %d/%d  loss %.4f (l1 %.4f fft %.3f)  lr %.2e  %.1f img/s  eta %s",
                     step, t_cfg.iterations, mean[0], mean[1], mean[2], lr_now, ips, format_eta(eta))
    s.meter.restart_clock()


def _validate(state: TrainState, s: _Session) -> None:
    """Score the model (its EMA weights when on) on the validation pairs and keep the best (rank 0)."""
    if not s.di.is_main or not s.val_pairs:
        return
    net = state.model
    if state.ema is not None:
        state.ema.copy_to(s.eval_model)
        net = s.eval_model
    convention = s.cfg.data.val_sets[0]
    res = validate(net, s.val_pairs, s.di.device, convention.y_channel, convention.crop_border,
                   state.autocast)
    step = state.step
    state.last_val_step, state.last_val = step, {"psnr": res["psnr"], "ssim": res["ssim"]}
    improved = state.best is None or res["psnr"] > state.best["psnr"]
    log.info("validation step %d: PSNR %.3f dB  SSIM %.4f  (%d images, %.1fs)%s%s", step,
             res["psnr"], res["ssim"], res["val_images"], res["seconds"], per_set_text(res, names=_val_names(s.cfg)),
             "  [best]" if improved else "")
    row = {"psnr": res["psnr"], "ssim": res["ssim"], "val_images": res["val_images"]}
    if len(res["sets"]) > 1:
        row.update({f"psnr_set{k}": v["psnr"] for k, v in res["sets"].items()})
    s.metrics.write("val", step, row)
    if improved:
        state.best = {"step": step, "psnr": res["psnr"], "ssim": res["ssim"]}
        save_best(state, s.run_dir)


def _val_names(cfg: TrainConfig) -> dict[int, str]:
    """``{k: data.val[k].name}`` of the named validation sets."""
    sets = cfg.data.val if isinstance(cfg.data.val, list) else [cfg.data.val]
    return {k: v.name for k, v in enumerate(sets) if v.name}


def _save_last(state: TrainState, s: _Session) -> None:
    if s.di.is_main:
        save_last(state, s.run_dir, s.cfg, s.di.world_size)
    state.last_saved_step = state.step


def _finish(state: TrainState, s: _Session, reason: str) -> TrainResult:
    """Check the replicas, write ``summary.json``, say how the session ended."""
    di, t_cfg, step, run_dir = s.di, s.cfg.train, state.step, s.run_dir
    digests = _check_replicas(state, s) if di.distributed and t_cfg.check_replicas else None
    result = TrainResult(
        run_dir=run_dir, step=step, iterations=t_cfg.iterations, reason=reason, best=state.best,
        last_checkpoint=run_dir / "checkpoints" / "last", images_per_s=s.meter.session_rate(),
        replica_digests=digests, world_size=di.world_size,
    )
    if di.is_main:
        s.metrics.close()
        write_json(run_dir, "summary.json", {
            "step": step, "iterations": t_cfg.iterations, "reason": reason, "best": state.best,
            "last_val": state.last_val or None, "images_per_s": result.images_per_s,
            "world_size": di.world_size, "train_seconds": round(state.elapsed, 3),
            "model": s.cfg.model.name,
        })
        best = state.best
        if reason == "completed":
            log.info("done: %d steps in %s%s", step, format_eta(state.elapsed),
                     f", best PSNR {best['psnr']:.3f} dB at step {best['step']}" if best else "")
        else:
            log.info("stopped (%s) at step %d/%d with a checkpoint; continue with: %s",
                     reason.replace("_", " "), step, t_cfg.iterations,
                     resume_command(run_dir, di.world_size))
    barrier()
    return result


def _check_replicas(state: TrainState, s: _Session) -> list[str]:
    """Every process's weight digest; ``replicas.json`` (rank 0); an error when they differ."""
    digests = check_replicas(state.model)
    same = len(set(digests)) == 1
    if s.di.is_main:
        write_json(s.run_dir, "replicas.json", {"step": state.step, "world_size": s.di.world_size,
                                                 "identical": same, "sha256": digests})
    if not same:
        raise RuntimeError(f"the {s.di.world_size} replicas' weights differ after step "
                           f"{state.step}: {digests}")
    log.info("replica check: all %d processes hold identical weights", s.di.world_size)
    return digests
