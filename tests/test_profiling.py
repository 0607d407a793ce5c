"""Tests for interir.profiling and `interir profile`: exact MAC counts, FFT formula, report."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import interir
from interir.models.explainable_conv import ExplainableConv2d
from interir.profiling import (
    count_macs,
    count_parameters,
    measure_peak_memory,
    module_macs,
    parse_sizes,
    profile_model,
)

CONV_MACS = 2 * 16 * 32 * 32 * 8 * 9  # (2, 8, 32, 32) -> 16 channels, 3x3, padding 1: 2,359,296


def test_conv_and_per_sample_grouped_conv_are_counted_exactly():
    assert count_macs(nn.Conv2d(8, 16, 3, padding=1), (2, 8, 32, 32)) == CONV_MACS
    # Batch 2 runs the explainable conv as one grouped conv with groups = B: same MACs.
    assert count_macs(ExplainableConv2d(8, 16, 3, padding=1), (2, 8, 32, 32)) == CONV_MACS
    assert count_macs(ExplainableConv2d(8, 16, 3, padding=1), (1, 8, 32, 32)) == CONV_MACS // 2


def test_kronecker_matmuls_are_counted():
    class Kron(nn.Module):
        def forward(self, x):
            p_h = torch.ones(1, 8, 32, 32)
            p_w = torch.ones(1, 8, 48, 48)
            return p_h @ x @ p_w

    assert count_macs(Kron(), (1, 8, 32, 48)) == 8 * 32 * 32 * 48 + 8 * 32 * 48 * 48


def test_fft_counted_by_formula():
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:])

    # 16 signals of N = 1024 points: r2c and c2r are 2.5 N log2 N FLOPs each = 409,600;
    # 819,200 FLOPs = 409,600 MACs.
    assert count_macs(Spectral(), (2, 8, 32, 32)) == 409_600

    class Complex(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x.to(torch.complex64), dim=-1).real

    assert count_macs(Complex(), (1, 1, 4, 64)) == int(4 * 5 * 64 * 6) // 2


def test_interir_macs_add_up_and_scale():
    model = interir.create_model("interir-tiny")
    macs = module_macs(model, (64, 64))
    top = ["down", "init", "stages.0", "stages.1", "final_resm", "up"]
    assert sum(macs[name] for name in top) == macs[""]
    assert macs["stages.0"] == macs["stages.0.resm"] + macs["stages.0.dmum"] + macs["stages.0.mum"]
    assert count_macs(model, (2, 3, 64, 64)) == 2 * macs[""]
    # The Kronecker products grow with the side length, so MACs per pixel grow slightly.
    assert count_macs(model, (128, 128)) > 4 * macs[""]
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert not any(m.last_mask is not None for m in model.modules() if isinstance(m, ExplainableConv2d))


def test_parse_sizes():
    assert parse_sizes("256, 512x768") == [(256, 256), (512, 768)]
    assert parse_sizes([64, (32, 48)]) == [(64, 64), (32, 48)]
    with pytest.raises(ValueError, match="HxW"):
        parse_sizes("big")


def test_profile_report_tables_and_json():
    model = interir.create_model("interir-tiny")
    report = profile_model(model, sizes=[32, (32, 48)], runs=2, memory=False, depth=2, name="tiny")
    assert [(s.height, s.width) for s in report.sizes] == [(32, 32), (32, 48)]
    first = report.sizes[0]
    assert first.macs == count_macs(model, (32, 32)) and first.latency_ms > 0
    assert len(first.latency_runs_ms) == 2
    names = [row.name for row in first.modules]
    assert names[0] == "" and "stages.0" in names and "stages.0.resm" in names
    assert all(row.latency_ms is not None for row in first.modules)
    assert first.modules[0].params == report.params == count_parameters(model)
    text = report.to_markdown()
    assert "| input | GMACs | latency (ms)" in text and "stages.0.resm" in text
    data = json.loads(report.to_json())
    assert data["sizes"][1]["macs"] == report.sizes[1].macs and data["sizes"][0]["ms_per_megapixel"] > 0


def test_peak_memory_in_a_fresh_process():
    # The fresh process rebuilds the model from a safetensors checkpoint (no pickle), so it is a
    # registry model; width 8 and one stage keep the 1024^2 forward pass under a second.
    model = interir.create_model("interir-tiny", width=8, stages=1)
    # This process holds 512 MiB: the child must not inherit that as its peak (Linux keeps
    # ru_maxrss across exec, so the measurement reads VmHWM instead).
    ballast = torch.ones(128 * 2**20)
    small = measure_peak_memory(model, (1, 3, 64, 64), threads=1)
    large = measure_peak_memory(model, (1, 3, 1024, 1024), threads=1)
    del ballast
    assert small["peak_bytes"] < 512 * 2**20
    # Full-resolution 8-channel features of a 1024^2 image are 32 MiB each (~170 MiB measured).
    assert large["working_bytes"] > 100 * 2**20
    assert large["peak_bytes"] > small["peak_bytes"] + 100 * 2**20


def test_cli_profile(tmp_path):
    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    out = tmp_path / "p.json"
    result = CliRunner().invoke(app, [
        "profile", "-m", "interir-tiny", "--sizes", "32", "--runs", "1", "--no-memory", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "interir-tiny" in result.output and json.loads(out.read_text())["sizes"][0]["height"] == 32
