"""One way to load a model: :func:`load_model`, used by every command and the Python API.

A model spec is, in the order it is checked:

1. a shipped name (``interir.list_pretrained()``, e.g. ``"default"``, ``"eb-nafnet-small"``): the
   weights inside the package, sha256-checked by :mod:`interir.pretrained`;
2. an existing path: a run folder (``best`` preferred, else ``last``), a checkpoint folder, a
   ``.safetensors`` file or a ``model.json``, read by :mod:`interir.engine.checkpoint`;
3. a registered architecture (``interir.list_models()``): random weights, with a warning.

:func:`resolve_model` reads the one model-spec grammar every command shares (``restore``,
``explain``, ``eval``, ...): ``[LABEL=]SPEC``, where ``SPEC`` is one of the three above or a
classical method (``classical-dcp``, ``classical-nlm``, ``classical-dcp+nlm``;
:mod:`interir.classical`), and ``LABEL`` names the model in tables (default: the spec, or the
run folder's name for a path).

The parts stay apart: :mod:`interir.engine.checkpoint` reads and writes the files,
:mod:`interir.pretrained` maps a shipped name to its verified file, :mod:`interir.registry`
builds an architecture. This module joins them: :func:`build_model` turns a read
:class:`~interir.engine.checkpoint.Checkpoint` into a network (its description checked against
its weights on the ``meta`` device first), and :func:`ship_pretrained` goes the other way, from a
run to a shipped name.

Public API::

    load_model(spec, device="cpu", *, use_ema=True) -> nn.Module
    resolve_model(spec, device="cpu") -> tuple[str, nn.Module]     [LABEL=]SPEC, classical too
    load_pretrained(name="default", map_location="cpu") -> nn.Module
    build_model(checkpoint, use_ema=True) -> nn.Module
    check_consistent(checkpoint) -> None
    ship_pretrained(run, name="default", **info) -> Path
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from interir import pretrained
from interir.classical import create_classical, is_classical, list_classical
from interir.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_weights_into,
    recover_dir,
    save_checkpoint,
    shape_problems,
)
from interir.registry import closest_match_hint, create_model, list_models, stored_config
from interir.utils.device import resolve_device

__all__ = ["load_model", "resolve_model", "load_pretrained", "build_model", "check_consistent",
           "ship_pretrained"]

log = logging.getLogger(__name__)

ModelSpec = str | os.PathLike


def load_model(spec: ModelSpec, device: str | torch.device = "cpu", *, use_ema: bool = True) -> nn.Module:
    """Build a ready-to-run model from a shipped name, a checkpoint path or an architecture name.

    Args:
        spec: see the module docstring for what is accepted and in which order.
        device: ``"cpu"``, ``"auto"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            :class:`torch.device` (:func:`interir.utils.device.resolve_device` decides ``"auto"``).
        use_ema: use the EMA weights when the checkpoint has them (usually the better ones).

    Returns:
        The model on ``device`` in eval mode, mapping ``(B, 3, H, W)`` in [0, 1] to the same
        shape. ``model.checkpoint_path`` and ``model.checkpoint_meta`` record where it came from;
        a shipped model also has ``model.pretrained_name``.

    Raises:
        FileNotFoundError: ``spec`` is neither a shipped name, an existing path nor a model name.
        interir.pretrained.PretrainedError: shipped weights are missing or fail their sha256.
        CheckpointError: the checkpoint is corrupt or its weights do not fit its description.
        ValueError: the device is malformed or absent on this machine.
    """
    run_device = resolve_device(device)
    name = str(spec)
    if name in pretrained.list_pretrained():
        model = _from_checkpoint(pretrained.pretrained_path(name), run_device, use_ema)
        model.pretrained_name = name
        return model
    path = Path(spec)
    if path.exists() or recover_dir(path) != path:
        return _from_checkpoint(path, run_device, use_ema)
    if name in list_models():
        return _random_weights(name, run_device)
    if name == "default":
        pretrained.pretrained_path(name)  # raises: nothing is shipped under that name
    raise _not_found(name)


_LABELLED = re.compile(r"([^=/\\]+)=(.+)")


def _label_for_path(path: Path) -> str:
    """A table label for a checkpoint path: ``run/best`` for a run's checkpoint, else its name."""
    if path.name in ("best", "last") and path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}/{path.name}"
    if path.name in ("model.json", "model.safetensors"):
        return _label_for_path(path.parent)
    return path.stem if path.suffix else path.name


def resolve_model(spec: ModelSpec, device: str | torch.device = "cpu") -> tuple[str, nn.Module]:
    """Build the model a spec names and give it a table label: the one model-spec grammar.

    Args:
        spec: ``[LABEL=]SPEC``. ``SPEC`` is a shipped name (``default``, ...), a checkpoint
            folder, run folder or ``.safetensors`` file, a registered architecture (random
            weights, with a warning) or a classical method (``classical-dcp``,
            ``classical-nlm``, ``classical-dcp+nlm``: no learning, whole images). ``LABEL=``
            names the model in tables; an existing path containing ``=`` is read as a path.
        device: where the model runs (``"auto"``: :func:`interir.utils.device.resolve_device`).

    Returns:
        ``(label, model)``, the model in eval mode on ``device``, mapping ``(B, 3, H, W)`` in
        [0, 1] to the same shape (a classical method is an ``nn.Module`` without parameters,
        :class:`interir.classical.ClassicalMethod`).

    Raises:
        FileNotFoundError: ``SPEC`` names nothing of the above (the message lists what does, with
            the closest names).
        and what :func:`load_model` raises for a checkpoint or shipped model that cannot be read.
    """
    label, text = None, str(spec)
    labelled = _LABELLED.fullmatch(text)
    if labelled and not Path(text).exists():
        label, text = labelled.group(1), labelled.group(2)
    run_device = resolve_device(device)
    if is_classical(text):
        return label or text, create_classical(text).to(run_device)
    try:
        model = load_model(text, run_device)
    except FileNotFoundError as err:
        if Path(text).exists() or _looks_like_path(text):
            raise
        names = pretrained.list_pretrained() + list_models() + list_classical()
        raise FileNotFoundError(
            f"model {text!r} is neither a shipped model, a checkpoint path, a registered network "
            f"nor a classical method.{closest_match_hint(text, names)} Fix: pass a shipped model "
            f"({', '.join(pretrained.list_pretrained()) or 'none'}), a checkpoint folder or "
            f".safetensors file, a network ({', '.join(list_models())}) or a classical method "
            f"({', '.join(list_classical())}); LABEL=SPEC names it in tables"
        ) from err
    path = Path(text)
    return label or (_label_for_path(path) if path.exists() else text), model.eval()


#: Endings of the files :func:`load_model` reads: a spec ending so is a path, never a name.
_CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".pt", ".pth", ".ckpt")


def _looks_like_path(name: str) -> bool:
    """True when ``name`` can only be meant as a file or folder (a separator, a file ending)."""
    return (
        "/" in name or os.sep in name or name.startswith(("~", "."))
        or name.lower().endswith(_CHECKPOINT_SUFFIXES)
    )


def _not_found(name: str) -> FileNotFoundError:
    """The error for a spec that is no shipped name, existing path or architecture: a missing
    path says "no such file"; a name gets the closest shipped and registered names."""
    shipped = pretrained.list_pretrained()
    if _looks_like_path(name):
        return FileNotFoundError(
            f"no such file or folder: '{name}'. Fix: check the path (a run folder, checkpoint "
            f"folder or .safetensors file), or name a shipped model: {', '.join(shipped) or 'none'}"
        )
    architectures = list_models()
    close = difflib.get_close_matches(name, shipped + architectures, n=4, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return FileNotFoundError(
        f"'{name}' is neither a shipped model, an existing checkpoint path nor a registered "
        f"model name.{hint} Shipped (trained weights): {', '.join(shipped) or 'none'}. "
        f"Architectures (random weights): {', '.join(architectures)}"
    )


def _from_checkpoint(path: Path, device: torch.device, use_ema: bool) -> nn.Module:
    """The network a checkpoint describes, with its weights, on ``device`` in eval mode."""
    checkpoint = load_checkpoint(path, map_location="cpu")
    model = build_model(checkpoint, use_ema=use_ema).to(device).eval()
    model.checkpoint_path = str(checkpoint.path)
    model.checkpoint_meta = checkpoint.meta
    return model


def _random_weights(name: str, device: torch.device) -> nn.Module:
    """Architecture ``name`` with random weights, in eval mode, with a warning saying so."""
    warnings.warn(
        f"'{name}' is a model name, not a checkpoint: its weights are random, so its output "
        "is not a restoration. Pass a checkpoint folder or .safetensors file for trained weights",
        stacklevel=3,
    )
    model = create_model(name).to(device).eval()
    model.checkpoint_path = None
    model.checkpoint_meta = {}
    return model


def load_pretrained(name: ModelSpec = "default", map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a shipped model by name (checksum verified), or a checkpoint by path, in eval mode.

    :func:`load_model` restricted to shipped names and paths: an architecture name is refused
    with the list of shipped names rather than built with random weights.

    Args:
        name: a name from :func:`interir.list_pretrained` (e.g. ``"default"``,
            ``"eb-nafnet-small"``), or the path of a run folder, checkpoint folder or
            ``.safetensors`` file.
        map_location: device for the model.

    Returns:
        The network, mapping ``(B, 3, H, W)`` in [0, 1] to restored images of the same shape.
    """
    spec, path = str(name), Path(name)
    if spec not in pretrained.list_pretrained() and not path.exists() and recover_dir(path) == path:
        if _looks_like_path(spec):
            raise _not_found(spec)  # "no such file", not "no shipped model named ..."
        pretrained.pretrained_path(spec)  # raises, listing the shipped names
    return load_model(name, map_location)


def _create(checkpoint: Checkpoint, meta: bool = False) -> nn.Module:
    """The network ``checkpoint`` describes, with random weights (on the ``meta`` device: no
    memory)."""
    name = checkpoint.model_name
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return create_model(name, **stored_config(name, checkpoint.config))
    except (ValueError, TypeError) as e:
        version = checkpoint.meta.get("interir_version")
        fix = (f"use the interir version that wrote it ({version})" if version else
               "the file does not say which interir wrote it, so it is probably damaged or not an "
               "interir model: use another checkpoint or the original file")
        raise CheckpointError(
            f"checkpoint {checkpoint.path} describes model {checkpoint.model_name!r} with a config "
            f"this version of interir cannot build: {e}. Fix: {fix}."
        ) from e


def _count(shapes: Iterable[tuple[int, ...]]) -> int:
    """Number of values in tensors of these shapes."""
    return sum(math.prod(shape) for shape in shapes)


def _describe_arch(name: str | None, config: dict[str, Any] | None) -> str:
    """``'name' (field=value, ...)`` for error messages."""
    if not config:
        return repr(name)
    fields = ", ".join(f"{k}={v!r}" for k, v in sorted(config.items()))
    return f"{name!r} ({fields})"


def check_consistent(checkpoint: Checkpoint) -> None:
    """Check that a checkpoint's weights fit the model its description names, before building it.

    The description's fields were bounded when it was read
    (:func:`interir.registry.check_stored_config`); the model is then built on the ``meta``
    device (shapes, no memory, at most seconds within those bounds) and its parameter shapes
    compared with the stored ones, so a description that does not fit its weights (edited, mixed
    up, or a hostile header asking for a 4096-wide, 64-stage network) fails before gigabytes are
    allocated. A description that cannot be built even on the meta device is refused.

    Raises:
        CheckpointError: the description cannot be built or does not fit the weights.
    """
    try:
        skeleton = _create(checkpoint, meta=True)
    except (RuntimeError, NotImplementedError) as e:
        # Every registered model builds on the meta device (test_reliability_round2_bounds.py), so
        # a failure here comes from the description's sizes (e.g. a storage size that overflows);
        # building it for real could ask for terabytes, so it is refused.
        described = _describe_arch(checkpoint.model_name, dict(checkpoint.config))
        raise CheckpointError(
            f"checkpoint '{checkpoint.path}' describes a model that cannot even be sized "
            f"({type(e).__name__}: {str(e)[:200]}): {described}. "
            "The file is probably damaged or not an interir model. Fix: use another checkpoint "
            "(a run folder keeps 'best' and 'last') or copy the original file again"
        ) from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for label, state in (("weights", checkpoint.state_dict), ("EMA weights", checkpoint.ema_state_dict)):
        if state is None:
            continue
        problems = shape_problems(expected, {k: tuple(v.shape) for k, v in state.items()})
        if problems:
            described = _describe_arch(checkpoint.model_name, dict(checkpoint.config))
            raise CheckpointError(
                f"checkpoint '{checkpoint.path}' is inconsistent: its {label} do not fit the model "
                f"its description names, {described} ({_count(expected.values()):,} "
                f"parameters; the file holds {_count(tuple(v.shape) for v in state.values()):,}"
                f"). {'. '.join(problems)}. Fix: the description (model.json, or the header "
                "of the .safetensors file) was edited or comes from another checkpoint; use "
                "another checkpoint (a run folder keeps 'best' and 'last') or the original file"
            )


def build_model(checkpoint: Checkpoint, use_ema: bool = True) -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights (the EMA weights when
    present and ``use_ema``).

    Returns:
        The model on the weights' device, in eval mode.

    Raises:
        CheckpointError: see :func:`check_consistent` (checked before any allocation).
    """
    check_consistent(checkpoint)
    model = _create(checkpoint)
    load_weights_into(model, checkpoint, use_ema=use_ema)
    state = checkpoint.state_dict
    device = next(iter(state.values())).device if state else torch.device("cpu")
    return model.to(device).eval()


def ship_pretrained(run: ModelSpec, name: str = "default", **info: Any) -> Path:
    """Export a run's best (EMA) weights as the shipped model ``name`` and record its sha256.

    Args:
        run: a run folder, checkpoint folder or weights file accepted by :func:`load_model`.
        name: the shipped name.
        **info: extra fields for the registry entry (e.g. ``source_run``, ``steps``).

    Returns:
        The written weights path.
    """
    model = load_model(run)
    path = save_checkpoint(pretrained.WEIGHTS_DIR / f"{name}.safetensors", model)
    return pretrained.record_shipped(name, path, **info)
