"""Phase 3: the training run, sized by a measured throughput, and the scores of its weights.

The recipe is a training config (default ``configs/paper-mdir.yaml``: the paper's loss, Adam,
cosine schedule, 256-px patches, batch 32, degradations synthesised on the training device)
with the model replaced by ``--model``/``--model-opt``, the clean images read from ``--data``
(paths under the shared training folder are rebased there) and the validation pairs taken from
``--val-config`` (default: the ones the shipped default was chosen by). Everything runs through
:func:`interir.engine.train.train`; nothing here re-implements the loop.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from interir.config import TrainConfig, config_to_dict, load_config
from interir.loading import resolve_model
from interir.engine.train import TrainResult, train
from interir.engine.validation import validate
from interir.gpurun.options import CPU_TRAIN_SETTINGS
from interir.loading import load_model
from interir.models.unfolding import set_stage_checkpointing
from interir.registry import create_model
from interir.utils.device import empty_cache, is_out_of_memory

__all__ = ["SHARED_TRAIN", "rebase", "recipe", "make_config", "measure_throughput", "plan_run",
           "train_planned", "checkpoint_candidates", "best_candidate", "score", "score_spec"]

#: Where the shipped configs expect the clean training images (relative to the repository root).
SHARED_TRAIN = "../shared/data/train"
#: Share of the measured step time that the planned steps may use (validations, checkpoints,
#: the slower first steps and the data loader's start take the rest).
STEP_SHARE = 0.85


def rebase(path: str, data: Path) -> str:
    """``../shared/data/train/x`` -> ``<data>/x``; other paths are returned unchanged."""
    if path == SHARED_TRAIN or path.startswith(SHARED_TRAIN + "/"):
        return str(Path(data) / path[len(SHARED_TRAIN):].lstrip("/"))
    return path


def _rebased_val(val: dict | list, data: Path) -> dict | list:
    sets = val if isinstance(val, list) else [val]
    out = [{**v, **{k: [rebase(p, data) for p in v.get(k, [])] for k in ("roots", "include", "exclude")}}
           for v in sets]
    return out if isinstance(val, list) else out[0]


def recipe(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The training config, as a dict, before the run's sizes (see the module docstring)."""
    base = config_to_dict(load_config(opts.config))
    val = config_to_dict(load_config(opts.val_config))["data"]["val"]
    base["model"] = {"name": opts.model, "overrides": {}}
    data = base["data"]
    for key in ("train_roots", "paired_roots", "depth_roots", "exclude"):
        data[key] = [rebase(p, opts.data) for p in data[key]]
    data["val"] = _rebased_val(val, opts.data)
    # Stage checkpointing starts off for the model that replaces the recipe's: the throughput
    # probe switches it on when that model runs out of memory.
    base["train"].update(device=opts.device.type, amp="bf16", init_from=None, checkpoint_stages=False)
    base["output"] = {"dir": str(work), "name": "train", "tensorboard": "off"}
    return base


def make_config(opts: argparse.Namespace, base: dict[str, Any], name: str,
                **train_fields: Any) -> TrainConfig:
    """``base`` with ``train_fields`` set, then the CPU settings (on a CPU), ``--model-opt`` and
    ``--set`` applied in that order, validated."""
    d = copy.deepcopy(base)
    d["train"].update(train_fields)
    d["output"]["name"] = name
    overrides = list(CPU_TRAIN_SETTINGS) if opts.device.type == "cpu" else []
    overrides += [f"model.overrides.{item}" for item in opts.model_opt] + list(opts.overrides)
    return load_config(None, overrides, base=d)


def _probe(opts, base, seconds: float) -> tuple[TrainConfig, TrainResult, float]:
    log_every = 5 if opts.device.type == "cuda" else 1
    probe_base = copy.deepcopy(base)
    probe_base["data"]["val"] = {"kind": "none"}
    cfg = make_config(opts, probe_base, "throughput", iterations=100_000, log_every=log_every,
                      val_every=0, ckpt_every=0, max_minutes=max(seconds, 1.0) / 60)
    start = time.perf_counter()
    result = train(cfg, overwrite=True, max_steps=3 * log_every)
    return cfg, result, time.perf_counter() - start


def measure_throughput(opts: argparse.Namespace, base: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Training images per second of the recipe, from a few steps of the real trainer.

    When the model runs out of memory and has unfolded stages, ``train.checkpoint_stages`` is
    switched on (added to ``opts.overrides``, so the real run uses it too) and the probe tried
    once more.
    """
    try:
        return _throughput(opts, *_probe(opts, base, seconds))
    except Exception as exc:  # noqa: BLE001 - only out of memory is retried
        if not is_out_of_memory(exc) or not _has_stages(opts.model):
            raise
    # Outside the except block, so the failed attempt's tensors are freed before the retry.
    empty_cache(opts.device)
    opts.overrides.append("train.checkpoint_stages=true")
    return _throughput(opts, *_probe(opts, base, seconds))


def _has_stages(name: str) -> bool:
    """Whether model ``name`` has unfolded stages to checkpoint (built on the meta device)."""
    with torch.device("meta"):
        return set_stage_checkpointing(create_model(name))


def _throughput(opts, cfg: TrainConfig, result: TrainResult, wall: float) -> dict[str, Any]:
    batch = cfg.train.batch_size
    ips = result.images_per_s or 0.0
    steps_s = result.step * batch / ips if ips else wall
    return {"images_per_s": round(ips, 3), "steps": result.step, "batch_size": batch,
            "patch_size": cfg.data.patch_size, "amp": cfg.train.amp if opts.device.type == "cuda" else "off",
            "model": cfg.model.name, "model_overrides": dict(cfg.model.overrides),
            "checkpoint_stages": cfg.train.checkpoint_stages,
            "wall_s": round(wall, 2), "setup_s": round(max(0.0, wall - steps_s), 2)}


def plan_run(throughput: dict[str, Any], seconds: float, max_steps: int | None) -> dict[str, int]:
    """Steps that fit ``seconds`` at the measured rate, a checkpoint about every minute, and four
    validations (none before the end for runs under 8 steps)."""
    ips, batch = throughput["images_per_s"], throughput["batch_size"]
    usable = max(0.0, seconds - throughput["setup_s"]) * STEP_SHARE
    steps = max(1, int(usable * ips / batch))
    if max_steps:
        steps = min(steps, max_steps)
    per_minute = max(1, round(60 * ips / batch))
    return {"iterations": steps, "ckpt_every": per_minute if per_minute < steps else 0,
            "val_every": steps // 4 if steps >= 8 else 0}


def train_planned(opts: argparse.Namespace, base: dict[str, Any], plan: dict[str, int],
                  seconds: float) -> tuple[TrainConfig, TrainResult]:
    """The training run: ``plan``'s steps, stopped cleanly (with a checkpoint) after ``seconds``."""
    log_every = max(1, min(100, plan["iterations"] // 20))
    cfg = make_config(opts, base, "train", **plan, log_every=log_every, max_minutes=max(seconds, 1.0) / 60)
    return cfg, train(cfg, overwrite=True)


def checkpoint_candidates(result: TrainResult) -> list[Path]:
    """The best checkpoint of a completed run; of a stopped one, also the last (it may be better
    than a best chosen before the stop, and the final validation did not run)."""
    best, last = result.run_dir / "checkpoints" / "best", result.run_dir / "checkpoints" / "last"
    out = [p for p in (best,) if p.is_dir()]
    if result.reason != "completed" or not out:
        out.append(last)
    return out


@contextlib.contextmanager
def plain_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matrix products, so GPU scores match CPU ones."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def score(model: torch.nn.Module, cfg: TrainConfig, pairs: list[dict],
          device: torch.device) -> dict[str, Any]:
    """PSNR/SSIM of ``model`` on ``pairs`` (plain float32) under the config's metric convention."""
    convention = cfg.data.val_sets[0]
    with plain_fp32():
        res = validate(model.to(device), pairs, device, convention.y_channel, convention.crop_border)
    sets = {str(k): {m: round(v[m], 4) for m in ("psnr", "ssim")} | {"pairs": v["val_images"]}
            for k, v in res["sets"].items()}
    return {"psnr": round(res["psnr"], 4), "ssim": round(res["ssim"], 4), "pairs": res["val_images"],
            "seconds": round(res["seconds"], 2), "sets": sets}


def score_spec(spec: str, cfg: TrainConfig, pairs: list[dict],
               device: torch.device) -> dict[str, Any]:
    """:func:`score` of a model spec as ``interir eval -m`` takes it (e.g. ``default``)."""
    label, model = resolve_model(spec, device)
    return {"model": label, **score(model, cfg, pairs, device)}


def best_candidate(result: TrainResult, cfg: TrainConfig, pairs: list[dict],
                   device: torch.device) -> tuple[Path, dict[str, Any]]:
    """The candidate checkpoint with the highest validation PSNR, and the scores of each (none
    when there is only one candidate)."""
    paths = checkpoint_candidates(result)
    if len(paths) == 1:
        return paths[0], {}
    scores = {}
    for path in paths:
        scores[path.name] = score(load_model(path, device), cfg, pairs, device)
    name = max(scores, key=lambda k: scores[k]["psnr"])
    return result.run_dir / "checkpoints" / name, scores

