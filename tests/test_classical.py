"""Classical no-learning baselines: dark-channel-prior dehazing and non-local means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interir.classical import (
    DarkChannelPriorDehazer,
    box_filter,
    create_classical,
    dark_channel,
    estimate_airlight,
    estimate_noise_sigma,
    guided_filter,
    list_classical,
)
from interir.metrics import psnr

DATA = Path(__file__).parent / "data"


def _photo(name: str = "chelsea.png") -> torch.Tensor:
    """(1, 3, H, W) real CC0 photo from tests/data, or a smooth synthetic image if absent."""
    path = DATA / name
    if path.exists():
        arr = np.array(Image.open(path).convert("RGB"))[:160, :200]
    else:
        rng = np.random.default_rng(0)
        small = (rng.random((22, 27, 3)) * 255).astype(np.uint8)
        arr = np.array(Image.fromarray(small).resize((200, 160), Image.BICUBIC))
    return torch.from_numpy(arr).permute(2, 0, 1).float().unsqueeze(0) / 255.0


def _hazy(clean: torch.Tensor, airlight: float = 0.85, beta: float = 1.2) -> torch.Tensor:
    """Atmospheric scattering model I = J t + A (1 - t), depth growing from top to bottom."""
    h, w = clean.shape[-2:]
    depth = 0.3 + torch.linspace(0, 1, h).view(1, 1, h, 1).expand(1, 1, h, w)
    t = torch.exp(-beta * depth)
    return clean * t + airlight * (1 - t)


def test_registry_names_and_errors():
    assert list_classical() == ["classical-dcp", "classical-nlm", "classical-dcp+nlm"]
    with pytest.raises(KeyError, match="classical-dcp"):
        create_classical("classical-dpc")
    model = create_classical("classical-dcp")
    assert not model.training and sum(p.numel() for p in model.parameters()) == 0


def test_box_and_min_filters_match_brute_force():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 13, 17, dtype=torch.float64)
    r = 3
    ref = torch.zeros_like(x)
    mins = torch.zeros_like(x)
    for i in range(13):
        for j in range(17):
            win = x[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            ref[..., i, j] = win.mean(dim=(-1, -2))
            mins[..., i, j] = win.amin(dim=(-1, -2))
    torch.testing.assert_close(box_filter(x, r), ref)
    rgb = x[:, :1].expand(1, 3, 13, 17)
    torch.testing.assert_close(dark_channel(rgb, patch=2 * r + 1), mins[:, :1])
    # radius larger than the image: every pixel gets the global mean
    torch.testing.assert_close(box_filter(x, 40), x.mean(dim=(-1, -2), keepdim=True).expand_as(x))


def test_guided_filter_preserves_constant_and_smooths_noise():
    guide = torch.rand(1, 1, 32, 32)
    const = torch.full((1, 1, 32, 32), 0.4)
    torch.testing.assert_close(guided_filter(guide, const, 4, 1e-3), const)
    torch.manual_seed(1)
    flat_guide = torch.full((1, 1, 32, 32), 0.5)
    noisy = 0.5 + 0.1 * torch.randn(1, 1, 32, 32)
    assert guided_filter(flat_guide, noisy, 4, 1e-3).std() < 0.3 * noisy.std()


def test_airlight_estimate_on_synthetic_haze():
    clean = _photo()
    hazy = _hazy(clean, airlight=0.85, beta=2.0)
    a = estimate_airlight(hazy, dark_channel(hazy))
    assert a.shape == (1, 3, 1, 1)
    assert torch.allclose(a.flatten(), torch.full((3,), 0.85), atol=0.08)


def test_dcp_removes_synthetic_haze():
    clean = _photo()
    hazy = _hazy(clean)
    out = create_classical("classical-dcp")(hazy)
    assert out.shape == hazy.shape and out.min() >= 0 and out.max() <= 1
    gain = (psnr(out, clean) - psnr(hazy, clean)).item()
    assert psnr(hazy, clean).item() < 13
    assert gain > 6.0  # +10.9 dB on this crop
    assert out.std() > 1.5 * hazy.std()  # contrast restored
    t, _ = DarkChannelPriorDehazer().transmission(hazy)
    assert t.min() >= 0.1 and t.max() <= 1.0
    # haze thickens towards the bottom: estimated transmission decreases with depth
    assert t[..., :40, :].mean() > t[..., -40:, :].mean() + 0.1


def test_noise_sigma_estimate():
    clean = _photo()[0]
    g = torch.Generator().manual_seed(0)
    for sigma in (0.05, 0.1):
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        assert abs(estimate_noise_sigma(noisy) - sigma) < 0.15 * sigma
    assert estimate_noise_sigma(clean) < 0.02


def test_nlm_reduces_noise():
    pytest.importorskip("skimage.restoration")
    clean = _photo()
    g = torch.Generator().manual_seed(0)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    model = create_classical("classical-nlm")
    out = model(noisy)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert abs(model.last_sigmas[0] - 0.1) < 0.015
    assert psnr(noisy, clean).item() < 21
    assert (psnr(out, clean) - psnr(noisy, clean)).item() > 5.0  # +7.5 dB on this crop


def test_dcp_then_nlm_beats_dcp_alone_on_hazy_noisy_input():
    pytest.importorskip("skimage.restoration")
    clean = _photo()
    g = torch.Generator().manual_seed(2)
    both = (_hazy(clean) + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    dcp = create_classical("classical-dcp")(both)
    pipe = create_classical("classical-dcp+nlm")(both)
    assert psnr(dcp, clean).item() > psnr(both, clean).item() + 2.0
    assert psnr(pipe, clean).item() > psnr(dcp, clean).item() + 1.0
