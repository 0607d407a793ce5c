"""Tests for interir.export: export-form equivalence, TorchScript, ONNX on onnxruntime."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import interir
from interir.cli import _load_commands
from interir.cli.app import app
from interir.export import export_model, prepare_for_export, verify_export
from interir.models.explainable_conv import ExplainableConv2d, is_depthwise
from interir.models.layers import adaptive_avg_pool2d_exportable

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnxscript", "onnx"))


def _active_tiny(**overrides) -> torch.nn.Module:
    """interir-tiny with its residual branches on, so every explainable conv affects the output."""
    model = interir.create_model("interir-tiny", **overrides)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            if name.endswith("threshold"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


@pytest.mark.parametrize("size", [(7, 9), (33, 20), (12, 12), (3, 3), (5, 100)])
@pytest.mark.parametrize("out", [(3, 3), (1, 1), (5, 3)])
def test_exportable_pool_matches_adaptive_avg_pool(size, out):
    x = (torch.rand(2, 4, *size) > 0.5).float()
    assert torch.allclose(adaptive_avg_pool2d_exportable(x, *out), F.adaptive_avg_pool2d(x, out), atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding=2, dilation=2, groups=6, padding_mode="reflect"),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=5, padding=2, groups=2, bias=False),
])
def test_traced_conv_matches_the_module_at_other_sizes(kwargs):
    """Traced at one size, the conv uses its export forms (cumulative-sum pooling, shifted
    multiply-adds when depthwise) and must match the eager module at other sizes (and batches)."""
    conv = ExplainableConv2d(**kwargs).eval()
    with torch.no_grad():
        conv.threshold.normal_(0, 0.3)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(conv, torch.randn(2, kwargs["in_channels"], 13, 17))
    batches = (1, 3) if is_depthwise(conv) else (2,)
    for batch in batches:
        x = torch.randn(batch, kwargs["in_channels"], 10, 23)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), conv(x), atol=1e-5, rtol=1e-5)


def test_shifted_and_grouped_forms_agree_with_gradients():
    """Eq. 20's two forms give the same output and the same gradients (STE included)."""
    conv = ExplainableConv2d(6, 6, 3, padding=2, dilation=2, groups=6, padding_mode="reflect")
    with torch.no_grad():
        conv.threshold.normal_(0, 0.3)
    x = torch.randn(3, 6, 11, 9, requires_grad=True)
    results = []
    for form in (conv._convolve_grouped, conv._convolve_shifted):
        conv.zero_grad()
        x.grad = None
        _, mask = conv.binary_mask(x)
        out = form(x, conv.kernel_attention(mask))
        out.square().sum().backward()
        results.append((out.detach(), x.grad.clone(), conv.weight.grad.clone(), conv.threshold.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_export_form_matches_the_eager_model():
    model = _active_tiny()
    exported, dynamic_batch = prepare_for_export(model)
    assert dynamic_batch
    for shape in [(1, 3, 37, 45), (2, 3, 16, 29), (1, 3, 4, 5)]:
        x = torch.rand(shape)
        with torch.no_grad():
            assert torch.allclose(exported(x), model(x), atol=1e-5)
    assert model.stages[0].resm.aux_block.depthwise.forward.__func__ is ExplainableConv2d.forward


def test_torchscript_export_dynamic_size_and_batch(tmp_path):
    model = _active_tiny(stages=2)
    result = export_model(model, tmp_path / "m.pt", "torchscript", check=False)
    assert result.dynamic_batch and result.path.exists()
    err = verify_export(result, model, [(1, 3, 64, 96), (2, 3, 37, 45), (1, 3, 130, 77)])
    assert err < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ORT, reason='needs the onnx extra: pip install "interir[onnx]"')
def test_onnx_export_matches_pytorch_on_onnxruntime(tmp_path):
    """Dynamic batch, height and width: checked at sizes other than the traced 64x96 (batch 2)."""
    import onnxruntime as ort

    model = _active_tiny(stages=2)
    result = export_model(model, tmp_path / "m.onnx", "onnx", check=False)
    assert result.dynamic_batch
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.shape[1] == 3
    assert all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))
    err = verify_export(result, model, [(1, 3, 72, 88), (2, 3, 41, 57), (1, 3, 9, 130)])
    assert err < 1e-4


def test_cli_export_torchscript(tmp_path):
    _load_commands()
    out = tmp_path / "tiny.pt"
    result = CliRunner().invoke(app, ["export", "-m", "interir-tiny", "-f", "torchscript", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "max |difference|" in result.output
    assert torch.jit.load(str(out))(torch.rand(1, 3, 20, 28)).shape == (1, 3, 20, 28)
    result = CliRunner().invoke(app, ["export", "-m", "interir-tiny", "-f", "tflite", "-o", str(out)])
    assert result.exit_code != 0
