"""Inference settings of restore_tensor / restore_paths / `interir restore`: channels-last memory
format, bf16 autocast and the channel-attention pooling window (issue 15)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import interir
from interir.inference import files as files_module
from interir.inference import restore_paths, restore_tensor
from interir.inference import settings as settings_module
from interir.inference.settings import (
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    PRECISIONS,
    cpu_has_native_bf16,
    resolve_precision,
)
from interir.models.layers import WindowedMeanPool


def _active_tiny(seed: int = 0) -> torch.nn.Module:
    """interir-tiny with every zero-initialised parameter (gates, beta/gamma, last convs of the
    weight networks) drawn at random, so that every part of the network changes the image."""
    model = interir.create_model("interir-tiny")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def _image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    """A smooth random ``(3, H, W)`` image in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 1, width // 8 + 1, generator=gen)
    return torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear")[0]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return _active_tiny()


@pytest.mark.parametrize("tile", [0, 32])
def test_channels_last_matches_the_default_layout(tiny, tile):
    x = _image(48, 72)
    plain = restore_tensor(tiny, x, tile=tile, channels_last=False, precision="fp32")
    fast = restore_tensor(tiny, x, tile=tile, channels_last=True, precision="fp32")
    assert (plain - x).abs().mean() > 0.01  # the network does change the image
    assert fast.dtype == torch.float32 and fast.shape == x.shape and fast.is_contiguous()
    assert (fast - plain).abs().max() < 1e-5
    # the weights are put back in their own layout, so training code sees no change
    weights = [p for p in tiny.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert all(p.is_contiguous() for p in weights)


def test_channels_last_inside_inference_mode_leaves_the_model_trainable():
    model = _active_tiny().train()
    with torch.inference_mode():  # as a validation pass during training calls it
        restore_tensor(model, _image(32, 32), channels_last=True)
    assert not any(p.is_inference() for p in model.parameters())
    loss = model(_image(32, 32)[None]).mean()
    loss.backward()  # would fail on inference-tensor weights
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_model_already_in_channels_last_stays_so(tiny):
    model = _active_tiny().to(memory_format=torch.channels_last)
    restore_tensor(model, _image(32, 32), channels_last=True)
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("tile", [0, 32])
def test_bf16_returns_float32_close_to_fp32(tiny, tile):
    x = _image(48, 72)
    reference = restore_tensor(tiny, x, tile=tile, precision="fp32", channels_last=False)
    for channels_last in (False, True):
        out = restore_tensor(tiny, x, tile=tile, precision="bf16", channels_last=channels_last)
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        diff = (out - reference).abs()
        assert 0 < float(diff.max()) < 0.1 and float(diff.mean()) < 0.01  # bf16: ~3 digits
    assert torch.get_autocast_dtype("cpu") is not None and not torch.is_autocast_enabled("cpu")


def test_bf16_on_a_batch_and_a_tiny_image(tiny):
    batch = torch.stack([_image(20, 24, seed=s) for s in range(2)])
    out = restore_tensor(tiny, batch, precision="bf16")
    assert out.shape == batch.shape and out.dtype == torch.float32
    small = restore_tensor(tiny, torch.rand(3, 3, 5), precision="bf16", channels_last=True)
    assert small.shape == (3, 3, 5) and small.dtype == torch.float32


def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(tiny, monkeypatch):
    native = cpu_has_native_bf16()
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # GPUs: not measured
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    x = _image(24, 32)
    for flag in (False, True):  # "auto" runs what it resolves to on this machine
        monkeypatch.setattr(settings_module, "cpu_has_native_bf16", lambda flag=flag: flag)
        expected = restore_tensor(tiny, x, precision="bf16" if flag else "fp32")
        assert torch.equal(restore_tensor(tiny, x, precision="auto"), expected)


def test_bf16_elsewhere_than_cpu_and_cuda_is_refused():
    with pytest.raises(ValueError, match="use precision='fp32'"):
        settings_module._autocast("bf16", torch.device("mps"))


def test_pool_window_is_set_for_the_call_and_put_back():
    model = _active_tiny()
    x = _image(64, 64)
    whole = restore_tensor(model, x, tile=0)
    assert torch.equal(restore_tensor(model, x, tile=0, pool_window=0), whole)
    windowed = restore_tensor(model, x, tile=0, pool_window=16)
    assert (windowed - whole).abs().max() > 1e-4  # a 16-px window is not the whole 64-px image
    assert model.config.pool_window == 0
    assert {m.window for m in model.modules() if isinstance(m, WindowedMeanPool)} == {0}
    # the same as a network built with that window
    built = interir.create_model("interir-tiny", pool_window=16)
    built.load_state_dict(model.state_dict())
    assert torch.allclose(restore_tensor(built.eval(), x, tile=0), windowed, atol=1e-6)


def test_set_pool_window_gives_each_block_the_window_it_would_be_built_with():
    for name in ("interir-base", "interir-small"):
        model = interir.create_model(name)
        assert model.set_pool_window(192) == 0
        built = interir.create_model(name, pool_window=192)
        windows = [m.window for m in model.modules() if isinstance(m, WindowedMeanPool)]
        assert windows == [m.window for m in built.modules() if isinstance(m, WindowedMeanPool)]
        assert set(windows) == {192, 48} and model.config == built.config
        with pytest.raises(ValueError, match="pool_window"):
            model.set_pool_window(-1)


def test_pool_window_needs_an_interir_model():
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    with pytest.raises(ValueError, match="InterIR models"):
        restore_tensor(model, torch.rand(3, 8, 8), pool_window=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(precision="fp16"), "precision must be one of auto, fp32, bf16, got 'fp16'"),
        (dict(precision="BF16"), "one of auto, fp32, bf16"),
        (dict(channels_last="yes"), "channels_last must be True or False"),
        (dict(channels_last=1), "channels_last must be True or False"),
        (dict(pool_window=-8), "pool_window must be None"),
        (dict(pool_window=8.5), "pool_window must be None"),
    ],
)
def test_bad_settings_name_the_valid_choices(tiny, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        restore_tensor(tiny, torch.rand(3, 8, 8), **kwargs)
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    with pytest.raises(ValueError, match=message):  # refused before any output is made
        restore_paths([src], tmp_path / "out", tiny, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def settings_seen(monkeypatch) -> list[dict]:
    """The inference settings of every restore_tensor call made by the file functions."""
    seen = []
    original = files_module.restore_tensor

    def spy(model, image, **kwargs):
        seen.append({k: kwargs[k] for k in ("channels_last", "precision", "pool_window")})
        return original(model, image, **kwargs)

    monkeypatch.setattr(files_module, "restore_tensor", spy)
    return seen


def test_restore_paths_passes_the_settings_on(tiny, tmp_path, settings_seen):
    seen = settings_seen
    src = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(src)
    report = restore_paths([src], tmp_path / "out", tiny, channels_last=True, precision="bf16",
                           pool_window=0)
    assert report.ok and seen == [{"channels_last": True, "precision": "bf16", "pool_window": 0}]


def _cli(args: list[str]):
    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    return CliRunner().invoke(app, args)


def test_cli_flags_reach_restore_tensor(tmp_path, settings_seen):
    seen = settings_seen
    src = tmp_path / "a.png"
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(src)
    base = ["restore", str(src), "-m", "interir-tiny", "--overwrite"]
    result = _cli(base + ["-o", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert seen[-1] == {"channels_last": DEFAULT_CHANNELS_LAST, "precision": DEFAULT_PRECISION,
                        "pool_window": None}
    result = _cli(base + ["-o", str(tmp_path / "e"), "--precision", "bf16", "--pool-window", "16",
                          "--no-channels-last" if DEFAULT_CHANNELS_LAST else "--channels-last"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == {"channels_last": not DEFAULT_CHANNELS_LAST, "precision": "bf16",
                        "pool_window": 16}
    assert Path(tmp_path / "e" / "a.png").exists()


def test_cli_refuses_bad_settings_with_the_choices(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    base = ["restore", str(src), "-o", str(tmp_path / "out"), "-m", "interir-tiny"]
    result = _cli(base + ["--precision", "fp16"])
    assert result.exit_code == 2 and "--precision" in result.output
    assert ", ".join(PRECISIONS) in result.output
    result = _cli(base + ["--pool-window", "-1"])
    assert result.exit_code == 2 and "--pool-window" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_help_documents_the_settings():
    result = _cli(["restore", "--help"])
    assert result.exit_code == 0
    for flag in ("--channels-last", "--no-channels-last", "--precision", "--pool-window"):
        assert flag in result.output
    # why the defaults are what they are, without citing benchmarks/ (not in the wheel, issue 30)
    assert "measured" in result.output and "benchmarks/" not in result.output
