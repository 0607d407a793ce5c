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
    ({"stages": 100000}, None, "stages", 32),  # item 6: the header
    ({"stages": 3}, {"model_name": "interir-tiny", "config": {"stages": 10**6}}, "stages", 32),
    ({"width": 10**9}, None, "width", 4096),  # item 7: meta build overflowed, then a real 1.7 TB try
])
def test_hostile_sizes_are_refused_before_building(tmp_path, config, sidecar, field, bound):
    message = _load_refused(_hostile(tmp_path, config, sidecar=sidecar))
    assert f"field '{field}'" in message and f"bound of {bound}" in message
    assert "probably damaged or not an interir model" in message
    assert ("'m.json'" if sidecar else "the header of the weights file") in message


def test_every_size_field_of_every_registered_model_is_bounded():
    """A new integer field cannot escape the bounds; every model sizes itself on the meta device
    (loading refuses a description that cannot), also at its bounds."""
    from interir.registry import STORED_FLOAT_BOUNDS, STORED_INT_BOUNDS

    for name in list_models():
        for f in dataclasses.fields(_DEFAULT_CONFIGS[name]):
            if isinstance(f.default, (int, tuple)) and not isinstance(f.default, bool):
                assert f.name in STORED_INT_BOUNDS, (name, f.name)
        with torch.device("meta"):
            interir.create_model(name)
    assert STORED_FLOAT_BOUNDS["weight_hidden"] <= 16
    largest = {k: STORED_INT_BOUNDS[k] for k in ("width", "stages", "head_expansion")}
    with torch.device("meta"):  # seconds (docs/reliability.md has the time), no memory
        model = interir.create_model("interir-tiny", **largest)
    assert sum(p.numel() for p in model.parameters()) > 10**11


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


# ----------------------------------------------------------------------------------------------
# images: broken data is an error, memory limits are the process's


def _png(path: Path, width: int, height: int, data: bytes) -> Path:
    """An 8-bit RGB PNG declaring ``width x height`` whose IDAT holds ``data`` (compressed)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b""))
    return path


def _cli(*args):
    from typer.testing import CliRunner

    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_png_holding_fewer_rows_than_declared_is_refused(tmp_path):
    """Item 11: 1 of 200 rows was restored, exit 0, 199 rows silently black."""
    from interir.utils.io import ImageReadError, read_image

    row = b"\x00" + bytes(range(150))  # filter byte + 50 RGB pixels
    (tmp_path / "in").mkdir()
    short = _png(tmp_path / "in" / "short.png", 50, 200, row)

    with pytest.raises(ImageReadError, match="ends after 1 of 200 rows"):
        read_image(short)
    result = _cli("restore", tmp_path / "in", "-o", tmp_path / "out", "-m", "interir-tiny")
    assert result.exit_code == 1 and "ends after 1 of 200 rows" in result.output
    assert not (tmp_path / "out" / "short.png").exists()
    complete = _png(tmp_path / "full.png", 50, 200, row * 200)  # the same file, complete
    assert read_image(complete).size == (200, 50)


def test_the_85_byte_web_bomb_is_refused_before_decoding(tmp_path):
    """Item 8: a tiny PNG declaring 5000 x 4000 zero rows (under the page's 25 MP) took 250 s of
    CPU and 1.4 GB, blocking the page's single worker."""
    from interir.webapp.service import AppError, read_upload

    bomb = _png(tmp_path / "bomb.png", 5000, 4000, b"\x00" * 15001)
    assert bomb.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(AppError, match=r"bomb\.png: its compressed image data \(\d+ bytes\) "
                                       r"cannot hold the 5000 x 4000 pixels"):
        read_upload(bomb)
    assert time.perf_counter() - start < 1.0


def test_the_default_pixel_limit_counts_ulimit_v(monkeypatch):
    """Item 9: under `ulimit -v` 1.4 GB a 20-MP restore died after 51 s with the allocator's
    message; the limit now comes from the address space left."""
    import resource

    from interir.utils import io as image_io

    real = resource.getrlimit
    vm_size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                   if line.startswith("VmSize:"))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (
        (vm_size + 2**30, vm_size + 2**30) if which == resource.RLIMIT_AS else real(which)))
    limit, origin = image_io.max_pixels()
    assert limit < 2**30 // image_io.BYTES_PER_PIXEL + 1 and "ulimit -v" in origin
    assert 20_000_000 > limit  # a 20-MP photo is refused from its header


def test_running_out_of_memory_on_the_cpu_does_not_advise_the_cpu():
    """Item 9: "out of memory on cpu ... Fix: run with --device cpu" (it was on the CPU)."""
    from interir.inference import restore_tensor

    class Hungry(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")

    with pytest.raises(RuntimeError, match="out of memory on cpu") as info:
        restore_tensor(Hungry(), torch.rand(3, 64, 64), tile=64, device="cpu", min_tile=32)
    assert "--device cpu" not in str(info.value) and "ulimit -v" in str(info.value)


def test_a_patch_larger_than_every_training_image_is_a_config_error(tmp_path):
    """Item 10: data.patch_size=4096 on 96-px images: a warning, then 3.7 GB and a traceback."""
    from PIL import Image

    from interir.config import ConfigError, load_config
    from interir.data.training import training_dataset

    (tmp_path / "img").mkdir()
    for i, (h, w) in enumerate([(96, 96), (64, 80)]):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")

    def cfg(patch: int):
        return load_config(None, [f"data.patch_size={patch}"], base={
            "model": {"name": "interir-tiny"}, "train": {"batch_size": 16},
            "data": {"train_roots": [str(tmp_path / "img")], "val": {"kind": "none"}}})

    with pytest.raises(ConfigError) as info:
        training_dataset(cfg(4096))
    message = str(info.value)
    assert "data.patch_size=4096 is larger than every training image" in message
    assert "96 x 96" in message and "3.0 GiB" in message and "at most 96" in message
    with pytest.warns(UserWarning, match="1 training image"):  # 64 x 80 is padded, 96 x 96 not
        assert len(training_dataset(cfg(96))) == 2


def test_a_float32_rgb_tiff_is_read_and_restored_at_16_bits(tmp_path):
    """Item 19: a float32 RGB TIFF was "not a recognised image format"."""
    tifffile = pytest.importorskip("tifffile")
    from interir.utils.io import ImageReadError, read_header, read_image

    pixels = np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "scan.tif", pixels, photometric="rgb")
    loaded = read_image(tmp_path / "in" / "scan.tif")
    assert loaded.bit_depth == 16 and not loaded.was_grayscale
    assert torch.equal(loaded.image, torch.from_numpy(pixels).permute(2, 0, 1))
    assert read_header(tmp_path / "in" / "scan.tif").bit_depth == 16
    result = _cli("restore", tmp_path / "in", "-o", tmp_path / "out", "-m", "interir-tiny")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out" / "scan.png").bit_depth == 16
    tifffile.imwrite(tmp_path / "hdr.tif", pixels * 4, photometric="rgb")  # not in [0, 1]: never silently clipped
    with pytest.raises(ImageReadError, match="range from .* to 3.99"):
        read_image(tmp_path / "hdr.tif")


@pytest.mark.parametrize("seed", [1e30, float("inf"), float("nan"), 2.5, -1, 2**64, "abc", True])
def test_the_web_example_seed_is_bounded(tmp_path, seed):
    """Item 20: seed 1e30 gave "ValueError: Overflow when unpacking long long"."""
    from interir.webapp.service import AppError, run_example

    with pytest.raises(AppError, match=r"seed must be >= 0 and <= 4294967295, a whole number"):
        run_example(torch.nn.Identity(), "haze", seed, tmp_path)


def test_the_web_example_takes_whole_seeds_as_the_number_box_sends_them():
    from interir.webapp.service import MAX_SEED, check_seed

    assert check_seed(3.0) == 3 and check_seed(MAX_SEED) == MAX_SEED and check_seed("7") == 7
