"""PSNR/SSIM against scikit-image (the oracle of DEPENDENCIES.md §1), plus the result tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interir.metrics import MetricSettings, psnr, psnr_ssim, rgb_to_y, ssim
from interir.metrics.report import (
    AVERAGE,
    INPUT_ROW,
    ImageResult,
    SummaryTable,
    read_csv,
    summarize,
    write_csv,
)

skimage_metrics = pytest.importorskip("skimage.metrics")
skimage_color = pytest.importorskip("skimage.color")

DATA = Path(__file__).parent / "data"
PSNR_TOL = 1e-4
SSIM_TOL = 1e-5


# ------------------------------------------------------------------------------ image pairs
def _smooth_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth uint8 RGB image (low-frequency noise upsampled), odd sizes on purpose."""
    small = rng.random((h // 8 + 2, w // 8 + 2, 3))
    img = np.array(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return img


def _degrade(clean: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    x = clean.astype(np.float64)
    if kind == "noisy":
        x = x + rng.normal(0, 15, x.shape)
    elif kind == "blur":
        k = np.ones(5) / 5
        for ax in (0, 1):
            x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), ax, x)
    elif kind == "mild":  # high-PSNR pair, where the Y rounding convention matters most
        x = x * 0.99 + 1.3 + rng.normal(0, 0.8, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1234)
    clean = _smooth_rgb(rng, 157, 203)
    pairs = [(f"synthetic-{k}", _degrade(clean, k, rng), clean) for k in ("noisy", "blur", "mild")]
    for name in ("chelsea.png", "astronaut.png"):
        path = DATA / name
        if path.exists():
            real = np.array(Image.open(path).convert("RGB"))[:120, :150]
            pairs.append((f"{name}-noisy", _degrade(real, "noisy", rng), real))
            pairs.append((f"{name}-mild", _degrade(real, "mild", rng), real))
    return pairs


PAIRS = _pairs()
IDS = [p[0] for p in PAIRS]


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def _tie_mask(img: np.ndarray) -> np.ndarray:
    """Pixels whose exact Y is k + 0.5 (about 1 in 10^5): float code rounds them either way."""
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    return (65481 * r + 128553 * g + 24966 * b) % 255000 == 127500


def _sk_y(img: np.ndarray, round_y: bool, fix_ties: bool = True) -> np.ndarray:
    y = skimage_color.rgb2ycbcr(img)[..., 0]
    if not round_y:
        return y
    rounded = np.round(y)
    if fix_ties:  # the documented tie rule: exact halves go up (MATLAB's half away from zero)
        rounded[_tie_mask(img)] = np.floor(y[_tie_mask(img)] + 0.25) + 1
    return rounded


def _sk_ssim(a: np.ndarray, b: np.ndarray, channel_axis=None) -> float:
    return skimage_metrics.structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=channel_axis,
    )


def _crop(x: np.ndarray, c: int) -> np.ndarray:
    return x[c:-c, c:-c] if c else x


# ----------------------------------------------------------------------- oracle comparisons
@pytest.mark.parametrize("round_y", [False, True])
@pytest.mark.parametrize("crop", [0, 4])
@pytest.mark.parametrize("name,pred,target", PAIRS, ids=IDS)
def test_y_channel_matches_skimage(name, pred, target, round_y, crop):
    yp = _crop(_sk_y(pred, round_y), crop)
    yt = _crop(_sk_y(target, round_y), crop)
    ref_psnr = skimage_metrics.peak_signal_noise_ratio(yt, yp, data_range=255)
    ref_ssim = _sk_ssim(yp, yt)
    p = psnr(_t(pred), _t(target), y_channel=True, round_y=round_y, crop_border=crop)
    s = ssim(_t(pred), _t(target), y_channel=True, round_y=round_y, crop_border=crop)
    assert p.shape == (1,) and s.shape == (1,)
    assert abs(p.item() - ref_psnr) < PSNR_TOL
    assert abs(s.item() - ref_ssim) < SSIM_TOL


@pytest.mark.parametrize("name,pred,target", PAIRS, ids=IDS)
def test_rgb_matches_skimage(name, pred, target):
    ref_psnr = skimage_metrics.peak_signal_noise_ratio(target, pred, data_range=255)
    ref_ssim = _sk_ssim(pred.astype(np.float64), target.astype(np.float64), channel_axis=-1)
    assert abs(psnr(_t(pred), _t(target)).item() - ref_psnr) < PSNR_TOL
    assert abs(ssim(_t(pred), _t(target)).item() - ref_ssim) < SSIM_TOL


def test_round_y_ties_are_rare_and_deterministic():
    # 194 of the 2^24 RGB colours have an exact Y of k + 0.5; these are three of them
    for tie in [(0, 204, 68), (2, 44, 141), (5, 65, 25)]:
        px = torch.tensor(tie, dtype=torch.float64).view(1, 3, 1, 1)
        exact = 16 + (65481 * tie[0] + 128553 * tie[1] + 24966 * tie[2]) / 255000
        assert exact % 1 == 0.5
        assert rgb_to_y(px, round_y=True).item() == exact + 0.5
    # ties are rare in real pairs, and raw skimage (np.round on float Y) stays within 1e-3 dB
    total = sum(_tie_mask(p).sum() + _tie_mask(t).sum() for _, p, t in PAIRS)
    pixels = sum(p.size // 3 * 2 for _, p, _ in PAIRS)
    assert total / pixels < 1e-4
    for _, pred, target in PAIRS:
        ref = skimage_metrics.peak_signal_noise_ratio(
            _sk_y(target, True, fix_ties=False), _sk_y(pred, True, fix_ties=False), data_range=255)
        ours = psnr(_t(pred), _t(target), y_channel=True, round_y=True).item()
        assert abs(ours - ref) < 1e-3


def test_ssim_is_valid_region_mean_of_skimage_full_map():
    _, pred, target = PAIRS[0]
    yp, yt = _sk_y(pred, False), _sk_y(target, False)
    _, full = skimage_metrics.structural_similarity(
        yp, yt, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        full=True)
    ours = ssim(_t(pred), _t(target), y_channel=True).item()
    assert abs(ours - full[5:-5, 5:-5].mean()) < 1e-9
    # averaging the full (padded) map instead would be a different number
    assert abs(ours - full.mean()) > 1e-5


def test_reference_numbers_differ_between_conventions():
    """The two Y conventions differ measurably on a high-PSNR pair (DEPENDENCIES.md: ~0.5 dB)."""
    _, pred, target = PAIRS[2]  # synthetic-mild
    p_float = psnr(_t(pred), _t(target), y_channel=True, round_y=False).item()
    p_round = psnr(_t(pred), _t(target), y_channel=True, round_y=True).item()
    p_rgb = psnr(_t(pred), _t(target)).item()
    assert p_float > 40
    assert abs(p_float - p_round) > 0.05
    assert abs(p_float - p_rgb) > 1.0


def test_batch_and_unbatched_shapes_agree():
    preds = torch.stack([_t(p) for _, p, _ in PAIRS[:3]])
    targets = torch.stack([_t(t) for _, _, t in PAIRS[:3]])
    batch = psnr(preds, targets, y_channel=True)
    single = torch.cat([psnr(p, t, y_channel=True) for p, t in zip(preds, targets)])
    assert batch.shape == (3,)
    torch.testing.assert_close(batch, single)
    assert psnr(preds[0], targets[0]).shape == (1,)
    both_p, both_s = psnr_ssim(preds, targets, MetricSettings(y_channel=True, crop_border=2))
    torch.testing.assert_close(both_p, psnr(preds, targets, y_channel=True, crop_border=2))
    torch.testing.assert_close(both_s, ssim(preds, targets, y_channel=True, crop_border=2))


def test_identical_images_and_known_psnr():
    x = torch.rand(2, 3, 32, 32)
    assert torch.isinf(psnr(x, x)).all()
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constant offset of 5 levels in every channel -> MSE 25 -> 10*log10(255^2/25)
    a = torch.full((3, 16, 16), 100 / 255)
    b = torch.full((3, 16, 16), 105 / 255)
    assert abs(psnr(a, b).item() - 10 * math.log10(255**2 / 25)) < 1e-9


def test_quantize_option_and_data_range():
    torch.manual_seed(0)
    t = torch.rand(1, 3, 24, 24)
    t = torch.round(t * 255) / 255  # on the 8-bit grid
    p = (t + 0.001).clamp(0, 1)  # a quarter of a level: vanishes after quantisation
    assert psnr(p, t, quantize=False).item() < 70
    assert torch.isinf(psnr(p, t, quantize=True)).all()
    # data_range=255 inputs give the same numbers as [0, 1] inputs
    torch.testing.assert_close(psnr(p * 255, t * 255, data_range=255), psnr(p, t))
    # quantisation clamps out-of-range model outputs, raw mode does not
    over = t.clone()
    over[..., 0, 0] = 1.5
    assert psnr(over, t, quantize=True).item() > psnr(over, t, quantize=False).item()


def test_rgb_to_y_values():
    white = torch.full((1, 3, 1, 1), 255.0)
    black = torch.zeros(1, 3, 1, 1)
    assert abs(rgb_to_y(white).item() - 235.0) < 1e-3
    assert rgb_to_y(black).item() == 16.0
    assert rgb_to_y(torch.full((1, 3, 1, 1), 128.0), round_y=True).item() == 126.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(3, 16, 16), torch.rand(3, 16, 17))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(3, 20, 20), torch.rand(3, 20, 20), crop_border=5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        psnr(torch.rand(1, 16, 16), torch.rand(1, 16, 16))


def test_settings_describe_names_the_convention():
    assert "BasicSR" in MetricSettings(y_channel=True).describe()
    assert "MATLAB" in MetricSettings(y_channel=True, round_y=True).describe()
    d = MetricSettings(crop_border=4, quantize=False).describe()
    assert "RGB" in d and "crop 4 px" in d and "no quantisation" in d
    s = MetricSettings(y_channel=True, round_y=True, crop_border=3)
    assert MetricSettings.from_dict(s.to_dict()) == s


# ----------------------------------------------------------------------------------- tables
def _results() -> list[ImageResult]:
    out = []
    for model, gain in (("m1", 2.0), ("m2", 3.0)):
        for combo, base in (("rain", 20.0), ("haze", 10.0)):
            for i in range(2):
                out.append(ImageResult(model, "suite", combo, f"img{i}", {"beta": 0.1 * i},
                                       base + i, 0.5, base + i + gain, 0.6 + 0.1 * i))
    return out


def test_summary_table_layout_and_numbers():
    table = summarize(_results(), MetricSettings(y_channel=True), title="T")
    assert table.columns == ["haze", "rain"]  # canonical combination order
    assert table.rows == [INPUT_ROW, "m1", "m2"]
    assert table.cells[INPUT_ROW]["haze"].psnr == pytest.approx(10.5)
    assert table.cells[INPUT_ROW]["haze"].n == 2  # input counted once per image, not per model
    assert table.cells["m2"]["rain"].psnr == pytest.approx(23.5)
    assert table.average("m1").psnr == pytest.approx((12.5 + 22.5) / 2)
    assert table.average("m1").ssim == pytest.approx(0.65)
    assert table.gain("m2") == pytest.approx(3.0)
    md = table.to_markdown()
    assert "BasicSR" in md  # settings in the header
    assert f"| Method | haze | rain | {AVERAGE} | Gain (dB) |" in md
    assert "| m2 | **13.50/0.6500** | **23.50/0.6500** | **18.50/0.6500** | +3.00 |" in md
    assert "| Input | 10.50/0.5000 | 20.50/0.5000 | 15.50/0.5000 |  |" in md


def test_summary_json_round_trip_and_csv(tmp_path):
    results = _results()
    results.append(ImageResult("m1", "other", "", "x", None, float("inf"), 1.0, float("inf"), 1.0))
    table = summarize(results, MetricSettings(round_y=True, y_channel=True))
    assert table.columns == ["suite/haze", "suite/rain", "other"]
    text = table.to_json()
    data = json.loads(text)  # strict JSON, infinities stored as strings
    assert data["metric_settings"]["round_y"] is True
    assert "MATLAB" in data["metric_settings"]["description"]
    back = SummaryTable.from_json(text)
    assert back.columns == table.columns and back.rows == table.rows
    assert back.cells == table.cells and back.settings == table.settings
    assert back.to_markdown() == table.to_markdown()
    assert math.isinf(back.cells["m1"]["other"].psnr)
    assert back.average("m2") is None  # m2 misses a column

    path = write_csv(results, tmp_path / "per_image.csv")
    rows = read_csv(path)
    assert len(rows) == len(results) == 9
    assert rows[1].levels == {"beta": 0.1} and rows[-1].levels is None
    assert rows[0].output_psnr == pytest.approx(results[0].output_psnr)
