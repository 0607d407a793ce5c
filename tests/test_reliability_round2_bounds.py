"""Issue 27, round 2 of the hostile-input review: bounds and broken data (items 6-16, 19, 20).

Each test reproduces one case of the issue with a tiny crafted file in ``tmp_path`` and failed on
the code before the fix; docs/reliability.md ("Round 2") has one row per test.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import interir
from interir.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from interir.loading import load_model
from interir.registry import _DEFAULT_CONFIGS, list_models

# ----------------------------------------------------------------------------------------------
# checkpoints: sizes bounded before building, clear messages, no silent wrong weights


def _hostile(tmp_path: Path, config, name="m", sidecar=None, **header) -> Path:
    """A few-hundred-byte .safetensors file (one 2x2 tensor) whose header describes ``config``."""
    meta = {"format": "interir-checkpoint", "format_version": "1", "model_name": "interir-tiny",
            **header}
    if config is not None:
        meta["config"] = config if isinstance(config, str) else json.dumps(config)
    path = tmp_path / f"{name}.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path), metadata=meta)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def _load_refused(path: Path) -> str:
    """The message of the CheckpointError that loading ``path`` raises, within a second."""
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert time.perf_counter() - start < 5.0
    return str(info.value)


@pytest.mark.parametrize("config, sidecar, field, bound", [
    ({"stages": 100000}, None, "stages", 64),  # item 6: the header
    ({"stages": 3}, {"model_name": "interir-tiny", "config": {"stages": 10**6}}, "stages", 64),
    ({"width": 10**9}, None, "width", 1024),  # item 7: meta build overflowed, then a real 1.7 TB try
])
def test_hostile_sizes_are_refused_before_building(tmp_path, config, sidecar, field, bound):
    message = _load_refused(_hostile(tmp_path, config, sidecar=sidecar))
    assert f"field '{field}'" in message and f"bound of {bound}" in message
    assert "probably damaged or not an interir model" in message
    assert ("'m.json'" if sidecar else "the header of the weights file") in message


def test_every_size_field_of_every_registered_model_is_bounded():
    """A new integer field cannot escape the bounds; every model sizes itself on the meta device
    (loading refuses a description that cannot), and does so at its bounds within seconds."""
    from interir.registry import STORED_FLOAT_BOUNDS, STORED_INT_BOUNDS

    for name in list_models():
        for f in dataclasses.fields(_DEFAULT_CONFIGS[name]):
            if isinstance(f.default, (int, tuple)) and not isinstance(f.default, bool):
                assert f.name in STORED_INT_BOUNDS, (name, f.name)
        with torch.device("meta"):
            interir.create_model(name)
    assert STORED_FLOAT_BOUNDS["weight_hidden"] <= 16
    largest = {k: STORED_INT_BOUNDS[k] for k in ("width", "stages", "head_expansion")}
    start = time.perf_counter()
    with torch.device("meta"):
        interir.create_model("interir-tiny", **largest)
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize("config, header, expected", [
    ("[1,2,3]", {}, "is list '[1, 2, 3]', not a mapping"),  # item 14: AttributeError
    ({}, {"format_version": "abc"}, "format_version is 'abc', not a whole number"),  # item 15
    ({"width": 1e9}, {}, "field 'width' is 1000000000.0 (a decimal number), where an integer"),
    ({"airlight_stats": 1}, {}, "where true/false is expected"),
    ({"weight_hidden": 1e6}, {}, "field 'weight_hidden'"),
    ({"stages": "3"}, {}, "field 'stages' is '3' (a text), where an integer"),
])
def test_malformed_descriptions_get_a_clear_message(tmp_path, config, header, expected):
    message = _load_refused(_hostile(tmp_path, config, **header))
    assert expected in message
    assert "unknown" not in message and "invalid literal" not in message  # item 16's old text


def test_nafnet_level_lists_are_bounded(tmp_path):
    path = _hostile(tmp_path, {"encoder_blocks": [1] * 40, "decoder_blocks": [1] * 40},
                    model_name="nafnet")
    assert "a list of at most 8 integers" in _load_refused(path)
    path = _hostile(tmp_path, {"middle_blocks": 10**7}, model_name="nafnet", name="n2")
    assert "field 'middle_blocks' is 10000000" in _load_refused(path)


def _tiny_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    model = interir.create_model("interir-tiny")
    path = save_checkpoint(tmp_path / "tiny.safetensors", model)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _rewrite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the weights of a checkpoint file, keeping its header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    save_file(state, str(path), metadata=header)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    """Item 12: NaN weights gave an all-black PNG and "1 written, 0 failed"."""
    path, state = _tiny_checkpoint(tmp_path)
    key = sorted(state)[3]
    state[key].view(-1)[0] = bad
    _rewrite(path, state)
    with pytest.raises(CheckpointError, match="NaN or infinite values") as info:
        load_checkpoint(path)
    assert key in str(info.value) and "Fix:" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_bool_and_integer_weights_are_refused(tmp_path, dtype):
    """Item 13: bool and int64 weights were cast to float32 without a word."""
    path, state = _tiny_checkpoint(tmp_path)
    key = sorted(state)[0]
    state[key] = state[key].to(dtype)
    _rewrite(path, state)
    with pytest.raises(CheckpointError, match="casting would change its values") as info:
        load_model(path)
    assert key in str(info.value) and str(dtype).removeprefix("torch.") in str(info.value)


def test_half_precision_weights_are_cast_with_a_warning(tmp_path):
    """Item 13: float16 weights are widened to float32 (exact), and a warning says so."""
    path, state = _tiny_checkpoint(tmp_path)
    half = {k: v.half() for k, v in state.items()}
    _rewrite(path, half)
    with pytest.warns(UserWarning, match=r"as float16 .* cast to the model's float32 \(exact\)"):
        model = load_model(path)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, half[k].float())
