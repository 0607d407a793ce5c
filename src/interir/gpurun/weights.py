"""Trained weights in as few files as the device tool brings back (at most 16 MiB each).

:func:`write_weights` stores a model's weights in float32 when they fit the allowance, else in
float16 (or bfloat16 when a weight lies outside float16's range), split into shards
``weights-<i>-of-<n>.safetensors`` when one file would be too large; a single file is named
``weights.safetensors``. Every file carries the checkpoint header of
:mod:`interir.engine.checkpoint` (model name and config) plus ``shard`` and ``stored_dtype``.
:func:`join_weights` turns the files back into one float32 weights file that
:func:`interir.load_model`, ``interir eval`` and ``scripts/ship_default.py``
read; :func:`read_weights` loads them as a model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from interir.engine.checkpoint import (CHECKPOINT_FORMAT, FORMAT_VERSION, model_description, save_checkpoint,
                                       unwrap_model)
from interir.loading import load_model

__all__ = ["MiB", "storage_dtype", "split_state", "write_weights", "stored_dtype", "read_weights",
           "join_weights"]

MiB = 2**20
#: Bytes left in each file for the safetensors header (names, shapes, the model config).
HEADER_ROOM = 256 * 1024
FLOAT16_MAX = 65504.0


def _nbytes(state: dict[str, torch.Tensor], dtype: torch.dtype) -> int:
    size = torch.empty((), dtype=dtype).element_size()
    return sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in state.values())


def storage_dtype(state: dict[str, torch.Tensor], allowance: int) -> torch.dtype:
    """float32 when the weights fit ``allowance`` bytes, else float16, else bfloat16.

    float16 keeps 3 more mantissa bits than bfloat16; it is used when every floating weight is
    finite and below float16's largest value. ``allowance`` too small even for 16 bits raises
    ``ValueError``.
    """
    if _nbytes(state, torch.float32) <= allowance:
        return torch.float32
    if _nbytes(state, torch.float16) > allowance:
        raise ValueError(f"the weights need {_nbytes(state, torch.float16) / MiB:.1f} MiB even in 16 bits, "
                         f"more than the {allowance / MiB:.1f} MiB that can come back")
    floats = [t for t in state.values() if t.is_floating_point()]
    fits = all(t.numel() == 0 or (bool(torch.isfinite(t).all()) and float(t.abs().max()) < FLOAT16_MAX)
               for t in floats)
    return torch.float16 if fits else torch.bfloat16


def split_state(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of tensors of at most ``max_bytes`` each (a larger tensor stands alone)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for key, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and used + size > max_bytes:
            shards.append({})
            used = 0
        shards[-1][key] = tensor
        used += size
    return shards


def write_weights(model: nn.Module, out_dir: Path, max_file_bytes: int, max_files: int,
                  allowance: int) -> list[Path]:
    """Write ``model``'s weights into ``out_dir`` as one or more safetensors files (module doc).

    Args:
        max_file_bytes: the largest file the return allows.
        max_files: the most files the weights may take.
        allowance: the most bytes all weight files together may take.

    Returns:
        The files written, in order.
    """
    model = unwrap_model(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    budget = min(allowance, max_files * (max_file_bytes - HEADER_ROOM))
    dtype = storage_dtype(state, budget)
    stored = {k: (v.to(dtype) if v.is_floating_point() else v).clone() for k, v in state.items()}
    shards = split_state(stored, max_file_bytes - HEADER_ROOM)
    if len(shards) > max_files:
        raise ValueError(f"the weights need {len(shards)} files, more than the {max_files} left")
    desc = model_description(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards, 1):
        name = "weights.safetensors" if len(shards) == 1 else f"weights-{i}-of-{len(shards)}.safetensors"
        header = {"format": CHECKPOINT_FORMAT, "format_version": str(FORMAT_VERSION),
                  "model_name": desc["model_name"], "config": json.dumps(desc["config"], sort_keys=True),
                  "shard": f"{i}/{len(shards)}", "stored_dtype": str(dtype).removeprefix("torch.")}
        save_file(shard, str(out_dir / name), metadata=header)
        paths.append(out_dir / name)
    return paths


def stored_dtype(path: Path) -> str:
    """The dtype a file of :func:`write_weights` holds its weights in (``"float16"``, ...)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return (f.metadata() or {}).get("stored_dtype", "float32")


def _merged(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All shards' tensors in float32 and the first header, after checking the set is complete."""
    state: dict[str, torch.Tensor] = {}
    headers = []
    for path in paths:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            headers.append(f.metadata() or {})
            for key in f.keys():
                tensor = f.get_tensor(key)
                state[key] = tensor.float() if tensor.is_floating_point() else tensor
    shards = sorted(h.get("shard", "1/1") for h in headers)
    total = int(shards[0].split("/")[1])
    expected = sorted(f"{i}/{total}" for i in range(1, total + 1))
    if shards != expected:
        raise ValueError(f"incomplete or mixed weight files: shards {shards}, expected {expected}")
    if len({(h.get("model_name"), h.get("config")) for h in headers}) != 1:
        raise ValueError("the weight files describe different models")
    return state, headers[0]


def read_weights(paths: list[Path]) -> nn.Module:
    """The model held by the files :func:`write_weights` wrote (float32, eval mode, CPU)."""
    state, header = _merged([Path(p) for p in paths])
    meta = {k: header[k] for k in ("format", "format_version", "model_name", "config") if k in header}
    with tempfile.TemporaryDirectory(prefix="interir-weights-") as tmp:
        joined = Path(tmp) / "joined.safetensors"
        save_file(state, str(joined), metadata=meta)
        return load_model(joined)


def join_weights(paths: list[Path], target: Path) -> Path:
    """Join the files of :func:`write_weights` into one float32 weights file ``target`` (plus its
    ``.json`` description), loadable by :func:`interir.load_model`."""
    target = Path(target)
    if target.suffix != ".safetensors":
        raise ValueError(f"the joined file must end in .safetensors, got '{target}'")
    return save_checkpoint(target, read_weights(paths))
