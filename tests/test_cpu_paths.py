"""Issue 31: the float32 CPU paths - the onnx backend of restore/eval, channels-last eval, and
precision=auto following the capability torch dispatches at."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from typer.testing import CliRunner

import interir
from interir.cli import _load_commands
from interir.cli.app import app
from interir.engine.evaluate import restore as eval_restore
from interir.inference import restore_tensor, resolve_precision
from interir.inference import onnx_backend
from interir.inference.settings import cpu_has_native_bf16

HAS_ORT = all(importlib.util.find_spec(m) is not None
              for m in ("onnxruntime", "onnxscript", "onnx"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="needs the onnx extra")

_load_commands()
runner = CliRunner()


def _active_model() -> torch.nn.Module:
    """A one-stage width-8 interir-tiny whose every part acts (random weights and thresholds)."""
    model = interir.create_model("interir-tiny", width=8, stages=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
            if name.endswith("threshold"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def model_and_cache(tmp_path_factory):
    """The model and a private export cache (the exports take ~20-40 s each, made once here)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv(onnx_backend.CACHE_ENV, str(cache))
    yield _active_model(), cache
    patch.undo()


@needs_ort
def test_onnx_backend_matches_torch_whole_and_tiled(model_and_cache):
    model, cache = model_and_cache
    image = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(1))
    whole_torch = restore_tensor(model, image, tile=0, precision="fp32")
    whole_onnx = restore_tensor(model, image, tile=0, backend="onnx")
    assert (whole_onnx - whole_torch).abs().max() < 5e-5
    assert (whole_torch - image).abs().mean() > 1e-2  # the network does change the image
    # Tiled: the tiles must get the whole image's shared statistics, as with torch.
    shared = restore_tensor(model, image, tile=24, overlap=8, precision="fp32")
    per_tile = restore_tensor(model, image, tile=24, overlap=8, precision="fp32",
                              shared_stats=False)
    tiled_onnx = restore_tensor(model, image, tile=24, overlap=8, backend="onnx")
    assert (tiled_onnx - shared).abs().max() < 5e-5
    assert (per_tile - shared).abs().max() > 4 * 5e-5  # so matching `shared` tells them apart
    kinds = sorted(p.name.split("-")[1] for p in (cache / "onnx").glob("*.onnx"))
    assert kinds == ["plain", "stats"]


@needs_ort
def test_onnx_exports_are_cached_and_keyed_by_the_weights(model_and_cache):
    model, cache = model_and_cache
    image = torch.rand(3, 32, 32)
    restore_tensor(model, image, tile=0, backend="onnx")  # made by the test above, or now
    files = set((cache / "onnx").glob("*.onnx"))
    notes = []
    runner_ = onnx_backend.OnnxRunner(model, 4, 4, notify=notes.append)
    runner_.run(image[None])
    assert notes == [] and set((cache / "onnx").glob("*.onnx")) == files  # reused, not re-made
    other = _active_model()
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    assert onnx_backend.model_key(other, "plain") != onnx_backend.model_key(model, "plain")


@needs_ort
def test_eval_fast_paths_score_like_the_reference(model_and_cache):
    model, _ = model_and_cache
    batch = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(2))
    reference = eval_restore(model, batch)
    assert (eval_restore(model, batch, channels_last=True) - reference).abs().max() < 5e-5
    assert (eval_restore(model, batch, backend="onnx") - reference).abs().max() < 5e-5
    assert next(model.parameters()).is_contiguous()  # the model is put back


def test_backend_errors_are_clear(monkeypatch):
    model = _active_model()
    image = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, got 'tensorrt'"):
        restore_tensor(model, image, backend="tensorrt")
    with pytest.raises(ValueError, match="runs float32; pass --precision fp32"):
        restore_tensor(model, image, backend="onnx", precision="bf16")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r'needs onnxruntime.*pip install "interir\[onnx\]"'):
        restore_tensor(model, image, backend="onnx")


def test_cli_backend_errors(tmp_path, monkeypatch):
    photo = tmp_path / "a.png"
    from interir.utils.io import write_image
    write_image(photo, torch.rand(3, 16, 16))
    result = runner.invoke(app, ["restore", str(photo), "-o", str(tmp_path / "out"),
                                 "--backend", "tvm"])
    assert result.exit_code == 2 and "use one of torch, onnx" in result.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for command in (["restore", str(photo), "-o", str(tmp_path / "out")],
                    ["eval", str(tmp_path), "-o", str(tmp_path / "report")]):
        result = runner.invoke(app, [*command, "--backend", "onnx"])
        assert result.exit_code == 2, result.output
        assert "needs onnxruntime" in result.output and "interir[onnx]" in result.output
        assert not (tmp_path / "out").exists()  # refused before any work


def test_auto_precision_follows_the_dispatched_capability(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not cpu_has_native_bf16()
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() and resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN limited below bf16
    assert not cpu_has_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert cpu_has_native_bf16()


def test_the_runner_cache_does_not_keep_models_alive():
    import gc
    import weakref

    model = _active_model()
    onnx_backend.onnx_runner(model, 4, 4)
    assert onnx_backend.onnx_runner(model, 4, 4) is onnx_backend.onnx_runner(model, 4, 4)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
