"""Explaining one image: trajectory, degradation factors, multiplier, explainable convs, report."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interir import create_model
from interir.explain import (
    MissingExtraError,
    default_conv_names,
    explain_image,
    upsample_mask,
    write_report,
)
from interir.explain.convs import conv_role, explain_conv
from interir.metrics import psnr
from interir.models.explainable_conv import ExplainableConv2d, explainable_convs

H, W = 37, 45  # odd sizes: the unfolding pads to a multiple of s = 4 and crops back


def _tiny(name: str = "interir-tiny", **overrides):
    """A small network whose v2 gates are open, as after training (fresh v2 stages are identities)."""
    model = create_model(name, width=8, head_expansion=1, **overrides).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("update_gate"):
                param.fill_(0.1)
            elif param_name.endswith(("rate.out.bias", "row_weight.out.bias", "col_weight.out.bias")):
                param.fill_(0.5)
    return model


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    clean = torch.stack([xx, yy, (xx + yy) / 2]).clamp(0, 1)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return noisy, clean


@pytest.fixture(scope="module")
def tiny_explanation():
    torch.manual_seed(0)
    model = _tiny()
    noisy, clean = _pair()
    return model, noisy, clean, explain_image(model, noisy, target=clean)


def test_trajectory_has_one_entry_per_stage_and_ends_at_the_output(tiny_explanation):
    model, noisy, clean, exp = tiny_explanation
    stages = model.config.stages
    assert exp.stages == stages == 3
    for values in (exp.stage_images, exp.p_h, exp.p_w, exp.multiplier_energy, exp.multiplier_update,
                   exp.image_update, exp.p_h_change, exp.p_w_change, exp.stage_psnr):
        assert len(values) == stages
    with torch.no_grad():
        output = model(noisy.unsqueeze(0))[0]
    assert torch.equal(exp.stage_images[-1], output)
    assert torch.equal(exp.output, output)
    assert all(img.shape == (3, H, W) for img in exp.stage_images)
    assert exp.initial_image.shape == (3, H, W)
    # factors are channel means at the unfolding resolution ceil(H/4) x ceil(W/4)
    assert exp.p_h[0].shape == (10, 10) and exp.p_w[0].shape == (12, 12)
    # PSNR per stage is interir.metrics.psnr of that stage's estimate
    for k in range(stages):
        expected = float(psnr(exp.stage_images[k], clean)[0])
        assert exp.stage_psnr[k] == pytest.approx(expected, abs=1e-9)
    assert exp.input_psnr == pytest.approx(float(psnr(noisy, clean)[0]), abs=1e-9)


def test_stage_numbers_match_a_manual_trace(tiny_explanation):
    model, noisy, _, exp = tiny_explanation
    with torch.no_grad():
        trace = model.trace(noisy.unsqueeze(0))
    for k in range(exp.stages):
        lam = trace.multipliers[k][0]
        rms = float(lam.double().pow(2).mean().sqrt())
        assert exp.multiplier_energy[k] == pytest.approx(rms, rel=1e-6)
        assert torch.allclose(exp.p_h[k], trace.p_h[k][0].abs().mean(0))  # default: mean |P|
    signed = explain_image(model, noisy, conv_names=[], factor_reduction="signed")
    assert torch.allclose(signed.p_w[1], trace.p_w[1][0].mean(0))
    lam1, lam2 = trace.multipliers[0][0], trace.multipliers[1][0]
    rms = float((lam2 - lam1).double().pow(2).mean().sqrt())
    assert exp.multiplier_update[1] == pytest.approx(rms, rel=1e-6)
    # Lambda^0 and P^0 are read from the init module, so stage 1 has an update too
    assert math.isfinite(exp.multiplier_update[0]) and exp.multiplier_update[0] > 0
    assert math.isfinite(exp.p_h_change[0]) and math.isfinite(exp.initial_multiplier_energy)
    # the final stage is an image step only: no multiplier or degradation step
    assert math.isnan(exp.multiplier_update[-1]) and math.isnan(exp.p_h_change[-1])
    assert exp.image_update[-1] > 0


def test_masks_are_binary_at_the_input_size(tiny_explanation):
    model, _, _, exp = tiny_explanation
    assert [c.name for c in exp.convs] == default_conv_names(model)
    for conv in exp.convs:
        assert conv.masks.dtype == torch.bool
        assert conv.masks.shape == (4, H, W)
        assert conv.scale == 4
        assert conv.activation.shape == (H, W)
        assert 0.0 <= float(conv.activation.min()) and float(conv.activation.max()) <= 1.0
        module = explainable_convs(model)[conv.name]
        assert torch.equal(conv.feature_mask, module.last_mask[0])
        assert conv.feature_mask.shape[-2:] == (10, 12)
        # nearest upsampling: pixel (y, x) shows feature pixel (y // 4, x // 4)
        for i, channel in enumerate(conv.channels):
            blocks = conv.feature_mask[channel].repeat_interleave(4, 0).repeat_interleave(4, 1)
            expected = blocks[:H, :W]
            assert torch.equal(conv.masks[i], expected)
        assert torch.allclose(conv.attention, module.last_attention[0])


def test_default_selection_and_roles():
    model = _tiny()
    assert default_conv_names(model) == [
        "stages.0.resm.aux_block.depthwise",
        "stages.1.resm.aux_block.depthwise",
        "final_resm.aux_block.depthwise",
    ]
    five = default_conv_names(_tiny("interir-tiny", stages=5))
    assert five[1] == "stages.2.resm.aux_block.depthwise"
    assert conv_role("stages.0.dmum.row_block.depthwise", 3)[:2] == ("degradation", 1)
    assert conv_role("stages.1.mum.aux_block.depthwise", 3)[:2] == ("multiplier", 2)
    assert conv_role("final_resm.prior_block1.depthwise", 3)[:2] == ("image", 3)
    assert default_conv_names(create_model("deepsn-small")) == []


def test_conv_selection_errors_and_all():
    model = _tiny()
    noisy, _ = _pair()
    with pytest.raises(ValueError, match='Did you mean "stages.0.dmum.row_block.depthwise"'):
        explain_image(model, noisy, conv_names=["stages.0.dmum.row_blok.depthwise"])
    exp = explain_image(model, noisy, conv_names=["all"], channels=2)
    assert [c.name for c in exp.convs] == list(explainable_convs(model))
    assert all(c.masks.shape == (2, H, W) for c in exp.convs)
    assert explain_image(model, noisy, conv_names=[]).convs == []
    with pytest.raises(ValueError, match="differs from the image"):
        explain_image(model, noisy, target=noisy[:, :-1])


def test_kernel_deviation_is_zero_for_a_uniform_mask_and_matches_eq19():
    conv = ExplainableConv2d(2, 2, 3, padding=1, groups=2)
    with torch.no_grad():
        conv(torch.ones(1, 2, 8, 8))  # mask all on -> A = 1 -> W_b = W
    flat = explain_conv("c", conv, (8, 8))
    assert flat.relative_deviation == pytest.approx(0.0, abs=1e-6)
    x = torch.zeros(1, 2, 9, 9)
    x[..., :3, :] = 1.0  # only the top third is active
    with torch.no_grad():
        conv(x)
    top = explain_conv("c", conv, (9, 9))
    w_b = conv.per_sample_weight(conv.last_attention)[0]
    expected = float((w_b - conv.weight).detach().norm() / conv.weight.detach().norm())
    assert top.relative_deviation == pytest.approx(expected, rel=1e-5) and expected > 0.1
    assert top.attention[0, 0, 0] > 1 > top.attention[0, 2, 0]
    assert top.masks.dtype == torch.bool and top.masks.shape == (2, 9, 9) and top.scale == 1


def test_upsample_mask_geometry():
    mask = torch.tensor([[True, False], [False, True]])
    up, scale = upsample_mask(mask, (7, 5))  # ceil(7/4) = 2, ceil(5/4) = 2 -> factor 4
    assert scale == 4 and up.shape == (7, 5) and up.dtype == torch.bool
    assert up[:4, :4].all() and not up[:4, 4].any() and up[4:, 4:].all()
    assert upsample_mask(torch.ones(2, 2), (7, 5), factor=3)[1] == 4  # 3 does not fit 7 -> 2
    odd, scale = upsample_mask(torch.ones(3, 5, dtype=torch.bool), (8, 8))  # no common factor
    assert scale is None and odd.shape == (8, 8) and odd.all()


@pytest.mark.viz
def test_deepsn_model_explains_stages_without_convs(tmp_path):
    model = create_model("deepsn-small", width=8, stages=2, head_expansion=1).eval()
    noisy, _ = _pair()
    exp = explain_image(model, noisy)
    assert exp.convs == [] and exp.available_convs == [] and exp.stage_psnr is None
    index = write_report(exp, tmp_path)
    assert "no explainable convolutions" in index.read_text()
    assert not (tmp_path / "psnr.png").exists()
    with pytest.raises(ValueError, match="no explainable convolutions"):
        explain_image(model, noisy, conv_names=["stages.0.resm.aux_block.depthwise"])


@pytest.mark.viz
def test_report_is_written_for_a_tiny_model(tiny_explanation, tmp_path):
    _, _, _, exp = tiny_explanation
    index = write_report(exp, tmp_path / "report")
    page = index.read_text()
    links = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert {"trajectory.png", "psnr.png", "factors.png", "updates.png", "conv_01.png",
            "conv_03.png", "explanation.json", "stages/stage_03.png", "stages/target.png"} <= links
    for link in links:
        assert (index.parent / link).is_file(), link
        assert not Path(link).is_absolute()
    for png in index.parent.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for phrase in ("image step", "degradation step", "multiplier step", "nearest neighbour"):
        assert phrase in page
    data = json.loads((index.parent / "explanation.json").read_text())
    assert data["stages"] == 3 and data["image_size"] == [H, W]
    assert data["psnr"]["per_stage"] == pytest.approx(exp.stage_psnr)
    assert data["multiplier_update_rms"][-1] is None
    assert [c["name"] for c in data["convs"]] == [c.name for c in exp.convs]
    from interir.utils.io import read_image

    assert read_image(index.parent / "stages" / "stage_03.png").image.shape == (3, H, W)


def test_plotting_libraries_are_imported_lazily():
    code = (
        "import sys, interir.explain, interir.cli.explain, interir.cli\n"
        "interir.cli._load_commands()\n"
        "bad = [m for m in ('matplotlib', 'sklearn', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_matplotlib_names_the_extra(tiny_explanation, tmp_path, monkeypatch):
    _, _, _, exp = tiny_explanation
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError, match=re.escape('pip install "interir[viz]"')):
        write_report(exp, tmp_path / "nothing")
    assert not (tmp_path / "nothing" / "index.html").exists()


@pytest.mark.viz
@pytest.mark.filterwarnings("ignore:'interir-tiny' is a model name")
def test_explain_command(tmp_path):
    from interir.cli.app import app
    import interir.cli.explain  # noqa: F401  (registers the commands)
    from interir.utils.io import write_image

    noisy, clean = _pair()
    write_image(tmp_path / "noisy.png", noisy)
    write_image(tmp_path / "clean.png", clean)
    runner = CliRunner()
    listed = runner.invoke(app, ["explain", str(tmp_path / "noisy.png"), "--model", "interir-tiny",
                                 "--list-convs"])
    assert listed.exit_code == 0, listed.output
    assert "stages.0.dmum.col_block.depthwise" in listed.output
    result = runner.invoke(app, [
        "explain", str(tmp_path / "noisy.png"), "--target", str(tmp_path / "clean.png"),
        "-o", str(tmp_path / "out"), "--model", "interir-tiny",
        "--conv", "stages.1.mum.aux_block.depthwise", "--channels", "2", "--crop", "32",
    ])
    assert result.exit_code == 0, result.output
    assert "PSNR input" in result.output
    data = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert data["image_size"] == [32, 32]
    assert [c["name"] for c in data["convs"]] == ["stages.1.mum.aux_block.depthwise"]
    no_out = runner.invoke(app, ["explain", str(tmp_path / "noisy.png"), "--model", "interir-tiny"])
    assert no_out.exit_code == 2 and "--out" in no_out.output
    bad = runner.invoke(app, ["explain", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "y"),
                              "--model", "interir-tiny", "--conv", "nope"])
    assert bad.exit_code == 2 and "--list-convs" in bad.output
