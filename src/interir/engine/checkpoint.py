"""Checkpoints: safetensors weights + a JSON description, training state kept apart, no pickle.

A **checkpoint folder** holds::

    model.json              {"format": "interir-checkpoint", "model_name", "config", "step", ...}
    model.safetensors       the weights (the JSON description is also in its header metadata)
    model_ema.safetensors   exponential moving average of the weights (when training used EMA)
    training_state.pt       optimizer, LR scheduler, grad scaler, step, RNG states (resume only)

A **single weights file** ``name.safetensors`` (see :func:`save_checkpoint` with a path ending in
``.safetensors``) carries the model name and config in its header and is enough to rebuild the
model; a sidecar ``name.json`` is written next to it for people to read.

A **run folder** (``runs/<name>``) made by ``interir train`` holds ``checkpoints/best`` and
``checkpoints/last``; :func:`resolve_checkpoint` picks ``best`` when it exists, else ``last``.

Folders are written to a temporary sibling and renamed into place, single files to a temporary
file then ``os.replace``-d, so a crash never leaves a half-written checkpoint under the final
name. Loading reads weights with safetensors only, and the training state with
``torch.load(weights_only=True)``, which refuses arbitrary Python objects.

Public API::

    save_checkpoint(path, model, *, ema=None, optimizer=None, scheduler=None, scaler=None,
                    step=None, extra_state=None, metrics=None) -> Path
    load_checkpoint(spec, map_location="cpu") -> Checkpoint
    load_weights_into(model, checkpoint, *, use_ema=False) -> None
    load_training_state(spec, map_location="cpu") -> dict
    resolve_checkpoint(spec) -> Path

This module only reads and writes files. Building the network a checkpoint describes, and
loading a model from any spec (a shipped name, a path, an architecture), is
:func:`interir.load_model` (:mod:`interir.loading`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from torch import nn

from interir._version import __version__
from interir.registry import StoredConfigError, check_stored_config
from interir.utils.files import (atomic_write_bytes, atomic_write_text, default_mode, file_in_folder,
                                 fsync_dir)

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "EMA_FILE",
    "META_FILE",
    "STATE_FILE",
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights_into",
    "load_training_state",
    "resolve_checkpoint",
    "recover_dir",
    "shape_problems",
    "clean_interrupted_writes",
    "model_description",
    "unwrap_model",
    "atomic_write_bytes",
    "atomic_write_text",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "interir-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "model_ema.safetensors"
META_FILE = "model.json"
STATE_FILE = "training_state.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


# ----------------------------------------------------------------------------------------------
# small helpers


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network inside ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _config_to_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        return json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists, plain types
    if isinstance(config, dict):
        return json.loads(json.dumps(config))
    raise TypeError(f"model.config must be a dataclass or dict, got {type(config).__name__}")


def _lists_to_tuples(value: Any) -> Any:
    """JSON gives lists where the config dataclasses hold tuples (e.g. NAFNet block counts)."""
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _lists_to_tuples(v) for k, v in value.items()}
    return value


def model_description(model: nn.Module) -> dict[str, Any]:
    """``{"model_name", "config"}`` of a registry-built model (see :func:`interir.create_model`)."""
    model = unwrap_model(model)
    name = getattr(model, "model_name", None)
    if name is None:
        raise CheckpointError(
            f"{type(model).__name__} has no .model_name; build models with interir.create_model(name) "
            "so checkpoints can record how to rebuild them"
        )
    return {"model_name": str(name), "config": _config_to_dict(getattr(model, "config", None))}


def _write_dir_atomically(target: Path, fill) -> None:
    """Fill a temporary sibling folder with ``fill(tmp_dir)``, then swap it in as ``target``.

    ``rename`` cannot replace a non-empty folder, so an existing ``target`` is first renamed to
    ``.<name>.old-<id>``, the new one renamed into place, and the old one deleted. Between the
    two renames ``target`` is briefly absent; :func:`recover_dir` finds the old copy then.
    """
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        # mkdtemp makes the folder owner-only (0700); a checkpoint gets a plain mkdir's mode, so
        # other users can load a shared run.
        os.chmod(tmp, default_mode(directory=True))
        fill(tmp)
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
        fsync_dir(parent)


def recover_dir(target: Path) -> Path:
    """``target`` if it exists, else a complete copy left by an interrupted swap."""
    if target.exists():
        return target
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for old in reversed(olds):
        if (old / META_FILE).is_file() and (old / WEIGHTS_FILE).is_file():
            log.warning("using %s: %s was being replaced when the last run stopped", old, target)
            return old
    return target


def clean_interrupted_writes(target: str | os.PathLike) -> list[Path]:
    """Delete what interrupted writes of the checkpoint folder ``target`` left beside it.

    Every interrupted :func:`save_checkpoint` leaves a full-size ``.<name>.tmp-*`` (killed while
    filling) or ``.<name>.old-*`` (killed between the two renames) folder. When ``target`` itself
    is missing, the newest complete old copy (the one :func:`recover_dir` would read) is renamed
    back into place first, so nothing a resume needs is deleted. Call this when no other process
    is writing ``target`` (``interir train`` does, at start-up).

    Returns:
        The folders deleted.
    """
    target = Path(target)
    recovered = recover_dir(target)
    if recovered != target:
        os.replace(recovered, target)
        fsync_dir(target.parent)
        log.warning("restored %s from %s, left by an interrupted checkpoint write", target,
                    recovered.name)
    stale = sorted(target.parent.glob(f".{target.name}.tmp-*"))
    stale += sorted(target.parent.glob(f".{target.name}.old-*"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _state_dict_cpu(module_or_state) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    # Clone: safetensors refuses tensors that share storage, and we want plain contiguous copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _safetensors_bytes(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    header = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_name": meta["model_name"],
        "config": json.dumps(meta["config"], sort_keys=True),
    }
    return safetensors_save(state, metadata=header)


# ----------------------------------------------------------------------------------------------
# saving


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    ema: nn.Module | dict[str, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    step: int | None = None,
    extra_state: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Save a model (and optionally its training state) atomically.

    Args:
        path: a checkpoint folder to create or replace (e.g. ``runs/x/checkpoints/last``), or a
            file name ending in ``.safetensors`` to export the weights alone (plus a sidecar
            ``.json``; the training-state arguments must then be ``None``).
        model: a model built by :func:`interir.create_model` (``.model_name`` and ``.config``),
            possibly wrapped in ``DistributedDataParallel``.
        ema: EMA weights (a module or a state dict) saved as ``model_ema.safetensors``.
        optimizer, scheduler, scaler: their ``state_dict()`` goes into ``training_state.pt``.
        step: the number of optimizer steps taken so far.
        extra_state: more resume state (RNG states, data position, best metric...). Only tensors,
            numbers, strings, lists, tuples, dicts and ``None`` (``torch.load(weights_only=True)``).
        metrics: JSON-serialisable numbers recorded in ``model.json`` (e.g. validation PSNR).

    Returns:
        The path written.
    """
    path = Path(path)
    desc = model_description(model)
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        **desc,
        "step": step,
        "interir_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights": WEIGHTS_FILE,
        "ema_weights": EMA_FILE if ema is not None else None,
        "metrics": metrics or {},
    }
    weights = _safetensors_bytes(_state_dict_cpu(unwrap_model(model)), desc)

    if path.suffix == ".safetensors":
        if any(x is not None for x in (optimizer, scheduler, scaler, extra_state)):
            raise ValueError(
                "a single .safetensors file holds weights only; save training state to a checkpoint "
                "folder instead (a path without the .safetensors suffix)"
            )
        if ema is not None:  # exporting: the EMA weights are the ones to ship
            weights = _safetensors_bytes(_state_dict_cpu(ema), desc)
            meta["exported_from_ema"] = True
        meta["weights"] = path.name
        meta["ema_weights"] = None
        atomic_write_bytes(path, weights)
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    training_state: dict[str, Any] | None = None
    if any(x is not None for x in (optimizer, scheduler, scaler, extra_state)):
        training_state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": desc["model_name"],
            "step": step,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "extra": extra_state or {},
        }
    ema_bytes = _safetensors_bytes(_state_dict_cpu(ema), desc) if ema is not None else None

    def fill(tmp: Path) -> None:
        (tmp / WEIGHTS_FILE).write_bytes(weights)
        if ema_bytes is not None:
            (tmp / EMA_FILE).write_bytes(ema_bytes)
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    _write_dir_atomically(path, fill)
    return path


# ----------------------------------------------------------------------------------------------
# loading


@dataclass
class Checkpoint:
    """A checkpoint read from disk (weights on ``map_location``; training state not loaded).

    Attributes:
        path: the checkpoint folder or weights file.
        model_name: registered name to rebuild with :func:`interir.create_model`.
        config: the model's configuration fields (lists turned back into tuples).
        state_dict: the weights.
        ema_state_dict: the EMA weights, or ``None``.
        meta: the full ``model.json`` content (step, metrics, version...).

    :func:`interir.loading.build_model` rebuilds the network it describes.
    """

    path: Path
    model_name: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    ema_state_dict: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int | None:
        return self.meta.get("step")


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """Turn a run folder, checkpoint folder, ``.safetensors`` or ``model.json`` path into the
    checkpoint folder or weights file to read.

    Raises:
        FileNotFoundError: nothing loadable at ``spec``; the message says what was looked for.
    """
    path = Path(spec)
    if path.is_dir():
        if (path / META_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
            return path
        ckdir = path / "checkpoints"
        for name in ("best", "last"):
            cand = recover_dir(ckdir / name)
            if (cand / META_FILE).is_file() or (cand / WEIGHTS_FILE).is_file():
                return cand
        raise FileNotFoundError(
            f"no checkpoint in folder '{path}': expected {META_FILE} + {WEIGHTS_FILE} (a checkpoint "
            f"folder) or checkpoints/best or checkpoints/last (a training run folder)"
        )
    if path.is_file():
        if path.suffix == ".safetensors":
            return path
        if path.suffix == ".json":
            return path.parent if path.name == META_FILE else path.with_suffix(".safetensors")
        raise CheckpointError(
            f"'{path}' is not a checkpoint interir can read: only .safetensors weights (with their "
            f"JSON description) are loaded, never pickled files such as .pt/.pth/.ckpt. Fix: point "
            f"to a checkpoint folder, a run folder or a .safetensors file"
        )
    # A run folder whose 'last' was being swapped.
    recovered = recover_dir(path)
    if recovered != path:
        return recovered
    raise FileNotFoundError(f"checkpoint '{path}' does not exist")


def _read_safetensors(path: Path, map_location) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    device = str(map_location) if map_location is not None else "cpu"
    try:
        state: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device=device) as f:
            header = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except FileNotFoundError:
        raise
    except Exception as e:  # safetensors raises SafetensorError / OSError on corrupt files
        raise CheckpointError(
            f"cannot read weights file '{path}': {e}. The file is corrupt or not a safetensors "
            "file (e.g. truncated by an interrupted copy). Fix: use another checkpoint (the run "
            "folder keeps 'best' and 'last') or copy the file again"
        ) from e
    return state, header


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"checkpoint description '{meta_path}' is not valid JSON ({e}); the checkpoint is corrupt"
        ) from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"'{meta_path}' should hold a JSON object, got {type(meta).__name__}")
    return meta


def _file_in_checkpoint(folder: Path, name: object, key: str) -> Path:
    """``folder / name`` for a file ``model.json`` names, never outside the checkpoint folder."""
    try:
        return file_in_folder(folder, name, f"{META_FILE}'s {key!r}")
    except ValueError as err:
        raise CheckpointError(f"{err}; the checkpoint '{folder}' is damaged or was edited") from None


def _damaged(path: Path, problem: str) -> CheckpointError:
    """The error for a description that no interir ever wrote."""
    return CheckpointError(
        f"checkpoint '{path}' cannot be loaded: {problem}. The file is probably damaged or not an "
        "interir model. Fix: use another checkpoint (a run folder keeps 'best' and 'last') or "
        "copy the original file again"
    )


def _stored_config(path: Path, meta: dict[str, Any], header: dict[str, str],
                   sidecar: str) -> tuple[dict[str, Any], str]:
    """The model config of a checkpoint (the JSON description wins over the weights header) and
    where it was read, checked to be a mapping; ``{}`` when neither holds one."""
    if meta.get("config") is not None:
        config, source = meta["config"], f"'{sidecar}'"
    elif "config" in header:
        source = "the header of the weights file"
        try:
            config = json.loads(header["config"])
        except json.JSONDecodeError as e:
            raise _damaged(path, f"the config in {source} is not valid JSON ({e})") from None
    else:
        return {}, "nowhere"
    if not isinstance(config, dict):
        raise _damaged(path, f"the config in {source} is {type(config).__name__} "
                             f"{str(config)[:60]!r}, not a mapping of field names to values")
    return config, source


def _format_version(path: Path, value: Any) -> int:
    """The checkpoint format version: an integer in JSON, digits in a safetensors header."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _damaged(path, f"its format_version is {value!r}, not a whole number")


def _check_finite(path: Path, label: str, state: dict[str, torch.Tensor] | None) -> None:
    """Refuse weights holding NaN or infinity: such a model writes black or garbage images."""
    if not state:
        return
    bad = [k for k, v in state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"checkpoint '{path}' is broken: its {label} hold NaN or infinite values "
            f"({len(bad)} of {len(state)} tensors: {_show(sorted(bad), 3)}), so every output would "
            "be garbage. Fix: use an earlier checkpoint of the run (training diverged, e.g. "
            "checkpoints/best) or copy the original file again"
        )


def load_checkpoint(spec: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint's weights and description (see the module docstring for the layouts).

    Args:
        spec: run folder, checkpoint folder, ``.safetensors`` file or ``model.json`` path.
        map_location: device for the weights.

    Raises:
        FileNotFoundError: nothing at ``spec``.
        CheckpointError: corrupt files or a missing model description.
    """
    path = resolve_checkpoint(spec)
    ema_state, sidecar_name = None, META_FILE
    if path.is_dir():
        meta = _read_meta(path)
        weights_path = _file_in_checkpoint(path, meta.get("weights", WEIGHTS_FILE), "weights")
        if not weights_path.is_file():
            raise CheckpointError(f"checkpoint folder '{path}' has no weights file {weights_path.name}")
        state, header = _read_safetensors(weights_path, map_location)
        ema_name = meta.get("ema_weights")
        ema_path = _file_in_checkpoint(path, ema_name, "ema_weights") if ema_name else None
        if ema_path is not None and ema_path.is_file():
            ema_state, _ = _read_safetensors(ema_path, map_location)
    else:
        state, header = _read_safetensors(path, map_location)
        sidecar = path.with_suffix(".json")
        sidecar_name, meta = sidecar.name, {}
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("ignoring unreadable sidecar %s; using the weights header", sidecar)
            if not isinstance(meta, dict):
                log.warning("ignoring sidecar %s (not a JSON object); using the weights header",
                            sidecar)
                meta = {}
    name = meta.get("model_name") or header.get("model_name")
    config, source = _stored_config(path, meta, header, sidecar_name)
    if not name:
        raise CheckpointError(
            f"checkpoint '{path}' does not say which model it holds (no model_name in {META_FILE} or "
            "in the safetensors header). Fix: build the model with interir.create_model(name) and "
            "load the weights yourself, or re-save with interir.engine.checkpoint.save_checkpoint"
        )
    if not isinstance(name, str):
        raise _damaged(path, f"its model_name is {name!r}, not a name")
    fmt = meta.get("format", header.get("format"))
    if fmt not in (None, CHECKPOINT_FORMAT):
        raise CheckpointError(f"'{path}' has format {fmt!r}, expected {CHECKPOINT_FORMAT!r}")
    version = _format_version(path, meta.get("format_version", header.get("format_version", 1)))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' was written by a newer interir (checkpoint format "
            f"{version} > {FORMAT_VERSION}); upgrade interir to read it"
        )
    try:
        check_stored_config(name, config)
    except StoredConfigError as e:
        raise _damaged(path, f"the model config in {source}: {e}") from None
    for label, tensors in (("weights", state), ("EMA weights", ema_state)):
        _check_finite(path, label, tensors)
    meta = {**meta, "model_name": name, "config": config or {}}
    return Checkpoint(
        path=path,
        model_name=str(name),
        config=_lists_to_tuples(config or {}),
        state_dict=state,
        ema_state_dict=ema_state,
        meta=meta,
    )


def _show(items: list[str], n: int = 8) -> str:
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def shape_problems(
    own: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]], allow_missing: bool = False
) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of ``stored`` weights against a model's
    ``own`` shapes, one sentence each (empty when they fit)."""
    missing = [] if allow_missing else sorted(set(own) - set(stored))
    unexpected = sorted(set(stored) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {stored[k]} vs model {own[k]}"
        for k in set(own) & set(stored) if own[k] != stored[k]
    )
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_show(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {_show(shapes)}")
    return parts


def load_weights_into(
    model: nn.Module,
    checkpoint: Checkpoint | str | os.PathLike,
    *,
    use_ema: bool = False,
    allow_missing: bool = False,
) -> list[str]:
    """Load a checkpoint's weights into an existing model, checking that the architectures match.

    Args:
        model: the target network (a DDP wrapper is unwrapped).
        checkpoint: a :class:`Checkpoint` or anything :func:`load_checkpoint` accepts.
        use_ema: load the EMA weights when the checkpoint has them.
        allow_missing: leave the model's parameters that the checkpoint lacks at their
            initialisation (to add a zero-initialised module, such as ``airlight_stats``, to a
            trained network); unexpected keys and shape mismatches are still errors.

    Returns:
        The model's keys left at their initialisation (empty unless ``allow_missing``).

    Raises:
        CheckpointError: the keys or shapes differ; the message names both architectures, the
            missing and unexpected keys and the shape mismatches.
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint, map_location="cpu")
    target = unwrap_model(model)
    state = checkpoint.state_dict
    if use_ema and checkpoint.ema_state_dict is not None:
        state = checkpoint.ema_state_dict
    own = target.state_dict()
    left = sorted(set(own) - set(state)) if allow_missing else []
    problems = shape_problems({k: tuple(v.shape) for k, v in own.items()},
                               {k: tuple(v.shape) for k, v in state.items()}, allow_missing)
    if problems:
        model_name = getattr(target, "model_name", type(target).__name__)
        model_cfg = _config_to_dict(getattr(target, "config", None)) if hasattr(target, "config") else None
        ck_cfg = _config_to_dict(dict(checkpoint.meta.get("config") or {}))
        diff = []
        if model_cfg is not None:
            for k in sorted(set(model_cfg) & set(ck_cfg)):  # same family: show what differs
                if model_cfg[k] != ck_cfg[k]:
                    diff.append(f"{k}: checkpoint {ck_cfg.get(k)!r} vs model {model_cfg.get(k)!r}")
        # The same name on both sides is a same-family model of another size, not another model.
        what = (f"another {model_name!r} configuration than the model" if model_name ==
                checkpoint.model_name else
                f"a different architecture: checkpoint model {checkpoint.model_name!r} vs model "
                f"{model_name!r}")
        parts = [f"checkpoint '{checkpoint.path}' holds {what}"]
        if diff:
            parts.append(f"config differences: {_show(diff)}")
        parts.extend(problems)
        parts.append(
            "Fix: build the model the checkpoint describes (interir.load_model(path) does this), "
            "or train a new checkpoint for this architecture"
        )
        raise CheckpointError(". ".join(parts))
    _check_dtypes(checkpoint.path, own, state)
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k].to(device=v.device, dtype=v.dtype))
    return left


def _check_dtypes(path: Path, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """The dtype rule of loading: stored floats of another precision (float16, bfloat16, float64)
    are cast to the model's float dtype, with a warning; a bool or integer tensor where the model
    holds floats (or a float where it holds integers) is refused, since casting it would change
    its values without a word."""
    cast: dict[str, list[str]] = {}
    for k, v in own.items():
        if k not in state or state[k].dtype == v.dtype:
            continue
        stored = state[k].dtype
        if v.is_floating_point() and stored.is_floating_point:
            cast.setdefault(str(stored).removeprefix("torch."), []).append(k)
            continue
        if not v.is_floating_point() and stored != torch.bool and not stored.is_floating_point \
                and not stored.is_complex and v.dtype != torch.bool:
            continue  # integer buffers (e.g. counters): any integer width holds them
        raise CheckpointError(
            f"checkpoint '{path}' holds {k} as {str(stored).removeprefix('torch.')}, where the model "
            f"has {str(v.dtype).removeprefix('torch.')}: casting would change its values. The file "
            "is probably damaged or was not written by interir. Fix: use another checkpoint, or "
            "re-save the weights as float32 with interir.engine.checkpoint.save_checkpoint"
        )
    for dtype, keys in cast.items():
        warnings.warn(
            f"checkpoint '{path}' stores {len(keys)} tensor(s) as {dtype} (e.g. {keys[0]}); they "
            f"are cast to the model's {str(own[keys[0]].dtype).removeprefix('torch.')}"
            + (" (exact)" if dtype in ("float16", "bfloat16") else " (rounded to nearest)"),
            stacklevel=3,
        )


def load_training_state(
    spec: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read ``training_state.pt`` of a checkpoint folder with ``torch.load(weights_only=True)``.

    Returns:
        ``{"step", "optimizer", "scheduler", "scaler", "extra", "model_name", ...}``.

    Raises:
        FileNotFoundError: the checkpoint has no training state (e.g. an exported weights file).
        CheckpointError: the file is corrupt or holds objects other than plain data and tensors.
    """
    path = resolve_checkpoint(spec)
    state_path = path / STATE_FILE if path.is_dir() else path.with_name(STATE_FILE)
    if not state_path.is_file():
        raise FileNotFoundError(
            f"'{path}' has no {STATE_FILE}: it holds weights only and cannot resume training. Fix: "
            "resume from a run's checkpoints/last folder, or start a new run from these weights with "
            "train.init_from=PATH"
        )
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's own text advises weights_only=False, which would run code from the file: it is
        # replaced, never repeated.
        refused = isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e)
        problem = ("it holds Python objects (pickled classes) that interir refuses to unpickle, "
                   "because unpickling can run code from the file" if refused else
                   f"it is corrupt or truncated ({type(e).__name__})")
        raise CheckpointError(
            f"cannot read training state '{state_path}': {problem}. Fix: resume from a checkpoint "
            "written by `interir train` (a run's checkpoints/last), or start a new run from these "
            "weights with train.init_from=PATH"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{state_path}' is not an interir training state")
    return state
