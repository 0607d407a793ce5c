"""Tests for interir.degradations: each op, the pipeline, seeding and parameter records."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interir.config import ConfigError, validate_config
from interir.degradations import (
    patch_depth,
    COMBINATIONS,
    RAIN_STYLES,
    DegradationParams,
    DegradationPipeline,
    GaussianNoise,
    Haze,
    HazeParams,
    LayeredRainSampling,
    NoiseParams,
    Rain,
    RainMix,
    RainParams,
    canonical_combination,
    layered_kernel,
    layered_rain,
    parse_combinations,
    parse_levels,
    pseudo_depth,
    rain_sampling_for,
    rescale_depth,
    sample_rain_params,
    sky_mask,
    streak_kernel,
    streak_layer,
)


def _batch(b=4, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish random images with real contrast
    x = torch.rand(b, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _rain(b, level, angle=0.0, length=20.0, width=0.8, blend=0.8, seed=1):
    def v(x):
        return torch.full((b,), float(x))

    return RainParams(v(level), v(angle), v(length), v(width), v(blend),
                      torch.arange(seed, seed + b, dtype=torch.int64))


# ---------------------------------------------------------------------------- seeding


def test_same_seed_identical_different_seed_differs():
    x = _batch(6)
    pipe = DegradationPipeline()
    y1, p1 = pipe(x, torch.Generator().manual_seed(7))
    y2, p2 = pipe(x, torch.Generator().manual_seed(7))
    y3, p3 = pipe(x, torch.Generator().manual_seed(8))
    assert torch.equal(y1, y2) and p1.to_records() == p2.to_records()
    assert not torch.equal(y1, y3) and p1.to_records() != p3.to_records()
    assert (y1 - y3).abs().mean() > 0.01


def test_apply_is_per_image_independent_of_batch():
    x = _batch(5)
    pipe = DegradationPipeline()
    params = pipe.sample(5, torch.Generator().manual_seed(3))
    full = pipe.apply(x, params)
    for i in range(5):
        single = pipe.apply(x[i : i + 1], params.select([i]))
        torch.testing.assert_close(single[0], full[i], atol=1e-5, rtol=0)


def test_records_round_trip_reproduces_images():
    x = _batch(8)
    pipe = DegradationPipeline()
    y, params = pipe(x, torch.Generator().manual_seed(11))
    recs = json.loads(json.dumps(params.to_records()))  # survives JSON
    rebuilt = DegradationParams.from_records(recs)
    assert torch.equal(pipe.apply(x, rebuilt), y)
    # CSV-like strings also work
    as_str = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in recs]
    assert torch.equal(pipe.apply(x, DegradationParams.from_records(as_str)), y)


# ---------------------------------------------------------------------------- sampling


def test_level_sampling_ranges_and_combinations():
    pipe = DegradationPipeline()
    p = pipe.sample(2000, torch.Generator().manual_seed(0))
    assert set(p.combination) == set(COMBINATIONS)
    for j, (name, mx) in enumerate([("haze", 150.0), ("rain", 300.0), ("noise", 50.0)]):
        lv = p.levels[:, j]
        active = torch.tensor([name in c.split("+") for c in p.combination])
        assert torch.all(lv[~active] == 0)
        assert torch.all(lv[active] > 0) and torch.all(lv[active] <= mx)
        assert abs(float(lv[active].mean()) - mx / 2) < 0.05 * mx  # uniform on (0, max]
    # each combination chosen roughly 1/7 of the time
    for c in COMBINATIONS:
        assert 200 < p.combination.count(c) < 380


def test_fixed_levels_and_forced_combination():
    pipe = DegradationPipeline(combinations="haze+noise,rain", levels="haze=100,noise=25")
    p = pipe.sample(200, torch.Generator().manual_seed(1))
    for c, (h, r, n) in zip(p.combination, p.levels.tolist()):
        if c == "haze+noise":
            assert (h, r, n) == (100.0, 0.0, 25.0)
        else:
            assert c == "rain" and h == 0 and n == 0 and 0 < r <= 300
    q = pipe.sample(3, torch.Generator().manual_seed(1), combination="noise+haze")
    assert q.combination == ["haze+noise"] * 3


def test_parsers():
    assert canonical_combination("Noise+haze") == "haze+noise"
    assert parse_combinations(None) == COMBINATIONS
    assert parse_combinations("all") == COMBINATIONS
    assert parse_combinations("rain, haze+rain+noise") == ("rain", "haze+rain+noise")
    assert parse_levels("haze=100, noise=25") == {"haze": 100.0, "noise": 25.0}
    for bad in ["fog", "haze+haze", ""]:
        with pytest.raises(ValueError, match="invalid combination"):
            canonical_combination(bad)
    with pytest.raises(ValueError, match="unknown degradation"):
        parse_levels("snow=3")
    with pytest.raises(ValueError, match=">= 0"):
        parse_levels("noise=-1")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_levels("noise")


# ---------------------------------------------------------------------------- identity


def test_level_zero_is_identity():
    x = _batch(3)
    z = torch.zeros(3)
    assert torch.equal(Haze()(x, HazeParams(z, torch.full((3,), 0.8))), x)
    assert torch.equal(Rain()(x, _rain(3, 0.0)), x)
    assert torch.equal(GaussianNoise()(x, NoiseParams(z, torch.arange(3))), x)
    pipe = DegradationPipeline()
    p = pipe.sample(3, torch.Generator().manual_seed(0))
    p.haze.level.zero_()
    p.rain.level.zero_()
    p.noise.level.zero_()
    y = pipe.apply(x, p)
    assert torch.equal(y, x) and y is not x


# ---------------------------------------------------------------------------- haze


def test_haze_moves_toward_airlight_and_lowers_contrast():
    x = _batch(2, 64, 64)
    a = torch.tensor([0.8, 0.8])
    y = Haze()(x, HazeParams(torch.tensor([100.0, 150.0]), a))
    for i in range(2):
        assert abs(float(y[i].mean()) - 0.8) < abs(float(x[i].mean()) - 0.8)
        assert float(y[i].std()) < 0.7 * float(x[i].std())
    # more haze -> closer to A
    assert abs(float(y[1].mean()) - 0.8) < abs(float(y[0].mean()) - 0.8)
    # exact scattering model at the centre (d = 16) on a constant image
    j = torch.full((1, 3, 33, 33), 0.2)
    out = Haze()(j, HazeParams(torch.tensor([100.0]), torch.tensor([0.8])))
    t = math.exp(-0.1 * 16.0)
    assert abs(float(out[0, 0, 16, 16]) - (0.2 * t + 0.8 * (1 - t))) < 1e-5
    # haze is densest at the centre (pseudo-depth grows toward it)
    assert float(out[0, 0, 16, 16]) > float(out[0, 0, 0, 0])


def test_pseudo_depth_range_is_resolution_independent():
    for h, w in [(256, 256), (321, 481), (1024, 2048), (17, 9)]:
        d = pseudo_depth(h, w)
        assert d.shape == (1, 1, h, w)
        assert 15.9 < float(d.max()) <= 16.0 and float(d.min()) >= 8.7
    d = rescale_depth(torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]]]))
    assert d.flatten().tolist() == [8.0, 10.0, 12.0, 16.0]


def test_patch_depth_modes():
    g = torch.Generator().manual_seed(0)
    assert patch_depth(4, 64, 64, g, "centre") is None
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # drew nothing
    crop = patch_depth(64, 64, 48, torch.Generator().manual_seed(1), "crop")
    assert crop.shape == (64, 1, 64, 48) and crop.dtype == torch.float32
    assert float(crop.min()) >= 8.7 and float(crop.max()) <= 16.0
    # a window of a 2-8x larger image spans far less depth than the patch's own pseudo-depth
    own = pseudo_depth(64, 48)
    own_span = float(own.max() - own.min())
    spans = (crop.amax(dim=(1, 2, 3)) - crop.amin(dim=(1, 2, 3)))
    assert float(spans.max()) < own_span and float(spans.mean()) < 0.5 * own_span
    # the windows differ from patch to patch and are not centred on the patch
    assert float(crop.std(dim=0).mean()) > 0.3
    mixed = patch_depth(64, 32, 32, torch.Generator().manual_seed(2), "mixed")
    assert float(mixed.min()) >= 6.0 - 1e-5 and float(mixed.max()) <= 16.0 + 1e-5
    again = patch_depth(64, 32, 32, torch.Generator().manual_seed(2), "mixed")
    assert torch.equal(mixed, again)
    with pytest.raises(ValueError, match="must be one of"):
        patch_depth(1, 8, 8, g, "radial")


def test_haze_with_depth_map():
    x = _batch(1, 16, 16)
    p = HazeParams(torch.tensor([150.0]), torch.tensor([0.9]))
    torch.testing.assert_close(Haze()(x, p, torch.zeros(1, 1, 16, 16)), x)
    near = Haze()(x, p, torch.full((1, 1, 16, 16), 2.0))
    far = Haze()(x, p, torch.full((1, 1, 16, 16), 12.0))
    assert (far - 0.9).abs().mean() < (near - 0.9).abs().mean()
    with pytest.raises(ValueError, match="depth must have shape"):
        Haze()(x, p, torch.zeros(1, 1, 8, 8))


# ---------------------------------------------------------------------------- noise


def test_noise_has_requested_std_and_zero_mean():
    x = torch.full((2, 3, 128, 128), 0.5)
    p = NoiseParams(torch.tensor([25.0, 10.0]), torch.tensor([5, 6]))
    y = GaussianNoise()(x, p)
    for i, lv in enumerate([25.0, 10.0]):
        r = y[i] - x[i]
        assert abs(float(r.std()) - lv / 255) < 0.02 * lv / 255
        assert abs(float(r.mean())) < 0.002
    # channels get independent noise
    assert not torch.equal(y[0, 0], y[0, 1])


# ---------------------------------------------------------------------------- rain


def _streak_angle(r: torch.Tensor) -> float:
    """Dominant streak direction (degrees from vertical) from the structure tensor."""
    gx = r[1:-1, 2:] - r[1:-1, :-2]
    gy = r[2:, 1:-1] - r[:-2, 1:-1]
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    # dominant gradient orientation (from the x axis) is perpendicular to the streaks
    phi = 0.5 * math.atan2(2 * jxy, jxx - jyy)
    return math.degrees(-phi)


@pytest.mark.parametrize("angle", [0.0, 30.0, -25.0, 45.0])
def test_streak_kernel_direction(angle):
    k = streak_kernel(torch.tensor([angle]), torch.tensor([30.0]), torch.tensor([0.7]))[0]
    assert k.shape == (65, 65) and abs(float(k.max()) - 1.0) < 1e-6
    c = torch.arange(-32, 33, dtype=torch.float32)
    yy, xx = c[:, None], c[None, :]
    w = k / k.sum()
    sxx, syy, sxy = (w * xx * xx).sum(), (w * yy * yy).sum(), (w * xx * yy).sum()
    principal = math.degrees(0.5 * math.atan2(2 * float(sxy), float(syy - sxx)))
    assert abs(principal - angle) < 0.5
    # mass of a blurred segment: L * sigma * sqrt(2 pi) + 2 pi sigma^2 (the two round caps)
    expected = 30.0 * 0.7 * math.sqrt(2 * math.pi) + 2 * math.pi * 0.7**2
    assert abs(float(k.sum()) / expected - 1.0) < 0.03


@pytest.mark.parametrize("angle", [0.0, 30.0, -25.0])
def test_rain_streaks_are_oriented(angle):
    p = _rain(1, 300.0, angle=angle, length=30.0, width=1.2)
    r = streak_layer(p, 96, 96)[0, 0]
    assert abs(_streak_angle(r) - angle) < 6.0


def test_rain_adds_bright_streaks_and_density_grows_with_level():
    x = torch.full((2, 3, 96, 96), 0.1)
    y = Rain()(x, RainParams(
        torch.tensor([40.0, 300.0]), torch.zeros(2), torch.full((2,), 20.0),
        torch.full((2,), 0.8), torch.full((2,), 0.8), torch.tensor([3, 3])))
    assert torch.all(y >= x - 1e-6)  # streaks only brighten a dark image
    assert float(y.max()) > 0.75  # the brightest streak reaches the blend value
    frac = [(y[i, 0] - 0.1 > 0.05).float().mean().item() for i in range(2)]
    assert 0 < frac[0] < frac[1]
    # streak layer is normalised to [0, 1] and uses the same mask on every channel
    assert torch.equal(y[:, 0], y[:, 2])


def test_rain_streaks_enter_across_borders():
    r = streak_layer(_rain(1, 300.0, angle=0.0, length=30.0), 64, 64)[0, 0]
    # the top rows are as rainy as the middle (seeds drawn in the margin too)
    top, mid = float(r[:4].mean()), float(r[30:34].mean())
    assert top > 0.4 * mid


# ---------------------------------------------------------------------------- ranges / inputs


def test_output_stays_in_unit_range_at_extremes():
    pipe = DegradationPipeline(combinations=("haze+rain+noise",),
                               levels={"haze": 150, "rain": 300, "noise": 50})
    for v in (0.0, 1.0):
        x = torch.full((2, 3, 40, 40), v)
        y, _ = pipe(x, torch.Generator().manual_seed(0))
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert (y - x).abs().mean() > 0.05


def test_grayscale_batch_works_and_bad_inputs_fail_clearly():
    pipe = DegradationPipeline()
    g = torch.rand(2, 1, 32, 32)
    y, _ = pipe(g, torch.Generator().manual_seed(0))
    assert y.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\)"):
        pipe(torch.rand(2, 4, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        pipe(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        pipe(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="params describe 2 images"):
        pipe.apply(torch.rand(3, 3, 8, 8), pipe.sample(2, torch.Generator().manual_seed(0)))


def test_float64_and_odd_sizes():
    x = torch.rand(2, 3, 17, 29, dtype=torch.float64)
    y, _ = DegradationPipeline()(x, torch.Generator().manual_seed(2))
    assert y.dtype == torch.float64 and y.shape == x.shape


@pytest.mark.cuda
def test_cuda_matches_cpu_with_cpu_rng():
    x = _batch(4)
    pipe = DegradationPipeline()
    p = pipe.sample(4, torch.Generator().manual_seed(0))
    cpu = pipe.apply(x, p)
    gpu = pipe.apply(x.cuda(), p.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


def test_scene_depth_follows_the_clean_patch_and_splits_like_one_process():
    # A clean patch that is dark on the left half and bright on the right: the scene-structured
    # depth maps jump at the boundary (in one direction or the other), the smooth ones do not.
    clean = torch.zeros(16, 3, 32, 32)
    clean[..., 16:] = 1.0
    depth = patch_depth(16, 32, 32, torch.Generator().manual_seed(3), "scene", clean=clean)
    assert depth.shape == (16, 1, 32, 32) and depth.dtype == torch.float32
    assert float(depth.min()) >= 6.0 - 1e-5 and float(depth.max()) <= 16.0 + 1e-5
    step = (depth[..., 18] - depth[..., 13]).abs().mean(dim=(1, 2))  # across the edge
    flat = (depth[..., 10] - depth[..., 5]).abs().mean(dim=(1, 2))  # inside the left half
    assert int((step > flat + 1.0).sum()) >= 2
    # Draws are made for the whole batch: the rows 5..9 of a 16-image batch, given only their
    # clean patches, are exactly those rows of the single-process result.
    rows = list(range(5, 10))
    part = patch_depth(16, 32, 32, torch.Generator().manual_seed(3), "scene", clean=clean[rows], rows=rows)
    assert torch.equal(part, depth[rows])
    # "crop" and "mixed" honour rows the same way
    mixed = patch_depth(16, 32, 32, torch.Generator().manual_seed(4), "mixed")
    assert torch.equal(patch_depth(16, 32, 32, torch.Generator().manual_seed(4), "mixed", rows=rows), mixed[rows])
    with pytest.raises(ValueError, match="need the clean patches"):
        patch_depth(4, 8, 8, torch.Generator(), "scene")
    with pytest.raises(ValueError, match="clean must have shape"):
        patch_depth(4, 8, 8, torch.Generator(), "scene", clean=torch.rand(3, 3, 8, 8))


def test_level_power_draws_more_light_degradations_from_the_same_stream():
    uniform = DegradationPipeline().sample(4000, torch.Generator().manual_seed(5))
    light = DegradationPipeline(level_power=2.0).sample(4000, torch.Generator().manual_seed(5))
    assert uniform.combination == light.combination  # same draws, only the levels change
    for j, mx in enumerate((150.0, 300.0, 50.0)):
        u, v = uniform.levels[:, j], light.levels[:, j]
        active = u > 0
        # level = max * w**p for the same w in (0, 1]: v = max * (u / max)**2
        assert torch.allclose(v[active], mx * (u[active] / mx) ** 2, rtol=1e-4, atol=1e-4)
        assert torch.all(v[~active] == 0) and torch.all(v[active] <= mx)
        assert abs(float((v[active] < mx / 4).float().mean()) - 0.5) < 0.05  # median at max/4
    with pytest.raises(ValueError, match="level_power"):
        DegradationPipeline(level_power=0)


def test_clean_fraction_leaves_that_share_of_images_undegraded():
    base = DegradationPipeline().sample(64, torch.Generator().manual_seed(3))
    none = DegradationPipeline(clean_fraction=0.0).sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(base.levels, none.levels)  # 0 draws nothing extra: old runs are unchanged
    pipe = DegradationPipeline(clean_fraction=0.25)
    params = pipe.sample(4000, torch.Generator().manual_seed(3))
    clean = params.levels.sum(dim=1) == 0
    assert abs(float(clean.float().mean()) - 0.25) < 0.03
    assert torch.all(params.levels[~clean].sum(dim=1) > 0)
    # a clean-drawn image comes out exactly as it went in; the others do not
    g = torch.Generator().manual_seed(11)
    x = torch.rand(16, 3, 24, 24, generator=g)
    small = pipe.sample(16, torch.Generator().manual_seed(4))
    kept = small.levels.sum(dim=1) == 0
    assert 0 < int(kept.sum()) < 16
    y = pipe.apply(x, small)
    assert torch.equal(y[kept], x[kept])
    assert all(not torch.equal(y[i], x[i]) for i in torch.nonzero(~kept).flatten().tolist())
    with pytest.raises(ValueError, match="clean_fraction"):
        DegradationPipeline(clean_fraction=1.0)


# ---------------------------------------------------------------------------- rain styles


def _tiny(seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 6, 5, generator=g)
    return torch.nn.functional.interpolate(x, size=(24, 20), mode="bilinear", align_corners=False)


def _layered(b=1, level=300.0, angle=0.0, length=40.0, width=1.5, blend=0.5, seed=1, layers=1,
             spread=0.0, blur=0.3, veil=0.0, falloff=1.0, density=1.0, same_seed=False):
    def v(x):
        return torch.full((b,), float(x))

    seeds = torch.full((b,), seed) if same_seed else torch.arange(seed, seed + b)
    return RainParams(v(level), v(angle), v(length), v(width), v(blend), seeds.to(torch.int64),
                      torch.ones(b, dtype=torch.int64), v(layers), v(spread), v(blur), v(veil),
                      v(falloff), v(density))


def test_classic_rain_is_unchanged_for_the_same_seed():
    # values computed with the code before the layered styles existed
    x = _tiny()
    for sampling in (None, "classic"):
        kw = {} if sampling is None else {"rain_sampling": sampling}
        pipe = DegradationPipeline(combinations="rain,haze+rain+noise", **kw)
        y, p = pipe(x, torch.Generator().manual_seed(11))
        recs = p.to_records()
        assert [r["rain_seed"] for r in recs] == [
            1617149500839894484, 4368857027018007643, 3182252286009043448]
        assert recs[1]["rain_angle"] == pytest.approx(23.876708984375, abs=1e-9)
        assert recs[2]["rain_width"] == pytest.approx(0.5595114827156067, abs=1e-9)
        assert recs[0]["noise_seed"] == 4059593266090376771  # later draws not shifted
        assert all(r["rain_style"] == "classic" and r["rain_layers"] is None for r in recs)
        assert float(y.double().sum()) == pytest.approx(2752.238170489669, abs=2e-3)
        assert float(y.double().pow(2).sum()) == pytest.approx(1844.1087421190962, abs=2e-3)
        assert y[1, :, 5, 7].tolist() == pytest.approx(
            [0.5831964612007141, 0.6436130404472351, 0.8449031114578247], abs=1e-5)
    p = RainParams(torch.tensor([250.0, 120.0, 60.0]), torch.tensor([10.0, -30.0, 0.0]),
                   torch.tensor([30.0, 12.0, 20.0]), torch.tensor([1.0, 0.6, 1.4]),
                   torch.tensor([0.8, 0.9, 0.7]), torch.tensor([5, 6, 7]))
    r = Rain()(x, p)
    assert float(r.double().sum()) == pytest.approx(2397.42371811904, abs=2e-3)
    assert r[:, 1, 10, 10].tolist() == pytest.approx(
        [0.5653589367866516, 0.7037490606307983, 0.6310709714889526], abs=1e-5)


@pytest.mark.parametrize("style", ["sparse", "heavy", "varied", "benchmark"])
def test_layered_styles_are_seeded_recorded_and_rebuilt(style):
    x = _tiny()
    pipe = DegradationPipeline(combinations="rain,rain+noise", rain_sampling=style)
    y1, p1 = pipe(x, torch.Generator().manual_seed(4))
    y2, p2 = pipe(x, torch.Generator().manual_seed(4))
    y3, p3 = pipe(x, torch.Generator().manual_seed(5))
    assert torch.equal(y1, y2) and p1.to_records() == p2.to_records()
    assert not torch.equal(y1, y3)
    recs = json.loads(json.dumps(p1.to_records()))
    for r in recs:
        assert r["rain_style"] == "layered" and isinstance(r["rain_layers"], int)
        assert all(r[k] is not None
                   for k in ("rain_spread", "rain_blur", "rain_veil", "rain_density"))
    assert torch.equal(pipe.apply(x, DegradationParams.from_records(recs)), y1)
    # a classic pipeline rebuilds the same images from the records: the style travels with them
    assert torch.equal(DegradationPipeline().apply(x, DegradationParams.from_records(recs)), y1)


@pytest.mark.parametrize("style", ["sparse", "heavy", "varied"])
def test_layered_draws_stay_in_the_style_ranges(style):
    sampling = rain_sampling_for(style)
    p = sample_rain_params(torch.full((400,), 100.0), torch.Generator().manual_seed(0), style)
    drawn = {"angle": p.angle, "spread": p.spread, "layers": p.layers, "length": p.length,
             "width": p.width, "blur": p.blur, "brightness": p.blend, "veil": p.veil,
             "falloff": p.falloff, "density": p.density}
    for name, values in drawn.items():
        lo, hi = getattr(sampling, name)
        assert float(values.min()) >= lo - 1e-5 and float(values.max()) <= hi + 1e-5, name
    assert torch.equal(p.layers, p.layers.round())
    lo, hi = sampling.layers
    assert set(p.layers.int().tolist()) == set(range(lo, hi + 1))  # every count drawn
    assert torch.all(p.style == 1)


def test_benchmark_style_mixes_the_three_layered_styles():
    p = sample_rain_params(torch.full((300,), 100.0), torch.Generator().manual_seed(1), "benchmark")
    single = p.layers == 1
    assert 0.2 < float(single.float().mean()) < 0.6  # sparse always, varied sometimes, heavy never
    assert float(p.angle.abs().max()) > 20.0  # only varied leans this far
    assert float((p.veil[single] == 0).float().mean()) > 0.5  # sparse has no veil
    assert isinstance(rain_sampling_for("benchmark"), RainMix)
    assert set(RAIN_STYLES) == {"classic", "sparse", "heavy", "varied", "benchmark"}
    with pytest.raises(ValueError, match="classic, sparse"):
        rain_sampling_for("drizzle")


def _shift_correlation(r: torch.Tensor, angle: float, dist: float = 10.0) -> float:
    """Correlation of a (H, W) map with itself moved ``dist`` pixels along ``angle`` (deg)."""
    rad = math.radians(angle)
    dy, dx = round(dist * math.cos(rad)), round(dist * math.sin(rad))
    h, w = r.shape
    a = r[max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
    b = r[max(0, dy): h + min(0, dy), max(0, dx): w + min(0, dx)]
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


@pytest.mark.parametrize("layers,expect,avoid", [(1, [0.0], [-30.0, 30.0]),
                                                  (2, [-30.0, 30.0], [0.0]),
                                                  (3, [-30.0, 0.0, 30.0], [-60.0, 60.0])])
def test_layers_run_in_their_directions(layers, expect, avoid):
    p = _layered(level=150.0, length=60.0, width=1.5, layers=layers, spread=60.0)
    r = layered_rain(p, 128, 128)[0, 0]
    for a in expect:
        assert _shift_correlation(r, a) > 0.15, a
    for a in avoid:
        assert _shift_correlation(r, a) < 0.08, a


def test_layer_count_and_falloff_set_the_amount_of_rain():
    base = dict(level=150.0, length=30.0, width=1.5, blend=0.5, spread=40.0)
    one = layered_rain(_layered(layers=1, **base), 96, 96)
    five = layered_rain(_layered(layers=5, **base), 96, 96)
    fading = layered_rain(_layered(layers=5, falloff=0.5, **base), 96, 96)
    assert float(one.amax()) <= 0.5 + 1e-5  # a single layer peaks at its brightness
    assert float(five.amax()) > 0.6  # crossing layers add up
    assert float(fading.mean()) < 0.7 * float(five.mean())  # far layers shorter, thinner, dimmer


def test_veil_raises_brightness_uniformly_and_rain_is_additive():
    x = torch.cat([torch.full((1, 3, 48, 48), 0.2), _batch(1, 48, 48) * 0.5])
    no_veil = Rain()(x, _layered(b=2, blend=0.3, veil=0.0, seed=1, same_seed=True))
    veiled = Rain()(x, _layered(b=2, blend=0.3, veil=0.1, seed=1, same_seed=True))
    assert torch.allclose(veiled - no_veil, torch.full_like(x, 0.1), atol=1e-5)
    # the residual is the same on both backgrounds (nothing clips: x + rain + veil <= 0.9)
    res = no_veil - x
    assert torch.allclose(res[0], res[1], atol=1e-5) and float(res.max()) > 0.25
    assert torch.allclose(res[:, 0], res[:, 2], atol=1e-6)  # gray rain
    only_veil = Rain()(x, _layered(b=2, blend=0.0, veil=0.15))
    assert torch.allclose(only_veil, x + 0.15, atol=1e-6)


def test_layered_kernel_width_length_and_blur():
    k = layered_kernel(torch.zeros(3), torch.full((3,), 40.0), torch.tensor([1.0, 3.0, 3.0]),
                       torch.tensor([0.3, 0.3, 2.0]))
    assert k.shape == (3, 129, 129) and float(k.min()) >= 0.0 and float(k.max()) <= 1.0
    row = k[:, 64]  # across a vertical streak through its middle
    assert row.sum(dim=1).tolist() == pytest.approx([1.0, 3.0, 3.0], rel=0.02)  # width
    assert float(k[1, :, 64].sum()) == pytest.approx(40.0, rel=0.02)  # length
    assert float(row[1].max()) > 0.99 and float(row[2].max()) < 0.6  # blur softens and dims
    tilted = layered_kernel(torch.tensor([30.0]), torch.tensor([40.0]), torch.tensor([1.0]),
                            torch.tensor([0.3]))[0]
    c = torch.arange(-64, 65, dtype=torch.float32)
    yy, xx, w = c[:, None], c[None, :], tilted / tilted.sum()
    sxx, syy, sxy = (w * xx * xx).sum(), (w * yy * yy).sum(), (w * xx * yy).sum()
    principal = math.degrees(0.5 * math.atan2(2 * float(sxy), float(syy - sxx)))
    assert principal == pytest.approx(30.0, abs=0.5)


def test_layered_density_grows_with_level_and_density():
    cover = [float((layered_rain(_layered(level=lv, density=d), 96, 96) > 0.1).float().mean())
             for lv, d in ((30.0, 1.0), (150.0, 1.0), (150.0, 2.0))]
    assert 0 < cover[0] < cover[1] < cover[2]
    assert float(layered_rain(_layered(level=0.0), 32, 32).abs().max()) == 0.0


def test_mixed_styles_in_one_batch_match_their_own_renders():
    x = _batch(3, 40, 36)
    classic = _rain(1, 200.0, seed=9)
    layered = _layered(b=2, layers=3, spread=20.0, veil=0.05, seed=4)
    both = DegradationParams.cat([
        DegradationParams(["rain"], HazeParams(torch.zeros(1), torch.zeros(1)), classic,
                          NoiseParams(torch.zeros(1), torch.zeros(1, dtype=torch.int64))),
        DegradationParams(["rain"] * 2, HazeParams(torch.zeros(2), torch.zeros(2)), layered,
                          NoiseParams(torch.zeros(2), torch.zeros(2, dtype=torch.int64))),
    ])
    y = Rain()(x, both.rain)
    assert torch.equal(y[:1], Rain()(x[:1], classic))
    assert torch.equal(y[1:], Rain()(x[1:], layered))


def test_old_records_are_classic_and_bad_styles_fail():
    rec = {"combination": "rain", "haze_level": 0.0, "rain_level": 100.0, "noise_level": 0.0,
           "rain_angle": 5.0, "rain_length": 20.0, "rain_width": 1.0, "rain_blend": 0.8,
           "rain_seed": 3}
    p = DegradationParams.from_records([rec])
    assert int(p.rain.style[0]) == 0
    x = _batch(1, 32, 32)
    classic = Rain()(x, _rain(1, 100.0, 5.0, 20.0, 1.0, 0.8, 3))
    assert torch.equal(DegradationPipeline().apply(x, p), classic)
    with pytest.raises(ValueError, match="rain_style"):
        DegradationParams.from_records([{**rec, "rain_style": "drizzle"}])


def test_layered_sampling_rejects_bad_ranges_and_config_selects_a_style():
    with pytest.raises(ValueError, match="layers"):
        LayeredRainSampling(layers=(0, 3))
    with pytest.raises(ValueError, match="veil"):
        LayeredRainSampling(veil=(0.2, 0.1))
    cfg = validate_config({"data": {"train_roots": ["x"], "rain_style": "benchmark"}})
    assert cfg.data.rain_style == "benchmark"
    assert validate_config({"data": {"train_roots": ["x"]}}).data.rain_style == "classic"
    with pytest.raises(ConfigError, match="rain_style"):
        validate_config({"data": {"train_roots": ["x"], "rain_style": "drizzle"}})


def test_training_pipeline_uses_the_configured_rain_style():
    from interir.data.training import training_pipeline

    benchmark = training_pipeline(validate_config({"data": {"train_roots": ["x"], "rain_style": "benchmark"}}))
    assert isinstance(benchmark.rain_sampling, RainMix)
    classic = training_pipeline(validate_config({"data": {"train_roots": ["x"]}}))
    assert classic.rain_sampling == rain_sampling_for("classic")
    recs = benchmark.sample(64, torch.Generator().manual_seed(0)).to_records()
    assert "layered" in {r["rain_style"] for r in recs if "rain" in r["combination"]}


# ---------------------------------------------------------------------------- wide haze depth


def test_scene_wide_depth_mixes_crops_and_wide_fields():
    n, h, w = 64, 20, 24
    clean = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(3))
    mix = patch_depth(n, h, w, torch.Generator().manual_seed(5), "scene-wide", clean=clean)
    crop = patch_depth(n, h, w, torch.Generator().manual_seed(5), "crop")
    same_as_crop = (mix == crop).flatten(1).all(dim=1)
    assert 16 < int(same_as_crop.sum()) < 48  # about half the patches keep the crop's depth
    ratio = lambda d: d.flatten(1).quantile(0.9, dim=1) / d.flatten(1).quantile(0.1, dim=1)  # noqa: E731
    assert float(ratio(mix[~same_as_crop]).median()) > 2 * float(ratio(crop).median())
    # a distributed slice gets exactly the rows a single process would give those images
    part = patch_depth(n, h, w, torch.Generator().manual_seed(5), "scene-wide", clean=clean[10:20],
                       rows=range(10, 20))
    assert torch.equal(part, mix[10:20])


def test_haze_depth_modes_unchanged_and_wide_spans_real_depth_ratios():
    clean = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(2))
    # sums computed with the code before the "wide" mode existed
    for mode, expected in (("crop", 19184.0443983078), ("mixed", 14769.118049144745),
                           ("scene", 16767.516709327698)):
        d = patch_depth(3, 20, 24, torch.Generator().manual_seed(5), mode, clean=clean)
        assert float(d.double().sum()) == pytest.approx(expected, abs=1e-3), mode
    wide = patch_depth(64, 20, 24, torch.Generator().manual_seed(5), "wide",
                       clean=torch.rand(64, 3, 20, 24, generator=torch.Generator().manual_seed(3)))
    near, far = wide.amin(dim=(1, 2, 3)), wide.amax(dim=(1, 2, 3))
    ratio = far / near
    assert float(far.min()) >= 12.0 - 1e-4 and float(far.max()) <= 16.0 + 1e-4
    assert float(ratio.min()) >= 5.0 - 1e-3 and float(ratio.max()) <= 50.0 + 1e-2
    assert float(ratio.median()) > 10.0  # log-uniform in [5, 50]: median about 16
    scene = patch_depth(64, 20, 24, torch.Generator().manual_seed(5), "scene",
                        clean=torch.rand(64, 3, 20, 24, generator=torch.Generator().manual_seed(3)))
    assert float((scene.amax(dim=(1, 2, 3)) / scene.amin(dim=(1, 2, 3))).max()) < 3.0
    with pytest.raises(ValueError, match="clean"):
        patch_depth(2, 8, 8, torch.Generator(), "wide")
    val = {"kind": "synthetic", "roots": ["x"], "haze_depth": "wide"}
    cfg = validate_config({"data": {"train_roots": ["x"], "haze_depth": "wide", "val": val}})
    assert cfg.data.haze_depth == "wide" and cfg.data.val.haze_depth == "wide"


def _sky_and_ground(n=4, h=32, w=24, seed=0):
    """Clean patches: a smooth blue sky over the top 12 rows, textured dark ground below, and a
    dark "tower" in columns 4-7 that reaches the top edge."""
    g = torch.Generator().manual_seed(seed)
    clean = 0.2 * torch.rand(n, 3, h, w, generator=g)
    clean[:, :, :12] = torch.tensor([0.55, 0.7, 0.9]).view(1, 3, 1, 1)
    clean[:, :, :12, 4:8] = 0.1
    return clean


def test_sky_mask_finds_the_smooth_bright_top_and_stops_at_objects():
    clean = _sky_and_ground()
    sky = sky_mask(clean)
    assert sky.shape == (4, 1, 32, 24) and sky.dtype == torch.bool
    assert bool(sky[:, :, :8, 12:].all())  # well inside the sky
    assert not bool(sky[:, :, 14:].any())  # the ground
    assert not bool(sky[:, :, :, 4:8].any())  # the tower
    # a bright smooth region that does not reach the top (a white wall below an object) is not sky
    wall = _sky_and_ground()
    wall[:, :, :4] = 0.2 * torch.rand(4, 3, 4, 24, generator=torch.Generator().manual_seed(1))
    assert not bool(sky_mask(wall).any())
    # warm and dark smooth tops are not sky either
    warm = _sky_and_ground()
    warm[:, :, :12] = torch.tensor([0.9, 0.6, 0.3]).view(1, 3, 1, 1)
    assert not bool(sky_mask(warm).any())
    gray = sky_mask(_sky_and_ground().mean(dim=1, keepdim=True))  # one channel works
    assert bool(gray[:, :, :8, 12:].all())


def test_outdoor_depth_puts_the_sky_beyond_a_ground_that_recedes_upward():
    clean = _sky_and_ground(n=8)
    depth = patch_depth(8, 32, 24, torch.Generator().manual_seed(7), "outdoor", clean=clean)
    assert depth.shape == (8, 1, 32, 24) and depth.dtype == torch.float32
    sky = sky_mask(clean)
    ground_max = torch.where(sky, 0.0, depth).amax(dim=(1, 2, 3))
    sky_min = torch.where(sky, depth, float("inf")).amin(dim=(1, 2, 3))
    assert bool((sky_min >= 1.15 * ground_max - 1e-4).all())
    assert float(depth.max()) <= 11.0 * 1.4 + 1e-4
    rows = depth[:, 0, 14:, 8:].mean(dim=-1)  # ground rows, top to bottom
    assert bool((rows[:, 0] > rows[:, -1]).all())  # farther toward the top, in every patch
    # hazed with it, dense haze turns the sky into the airlight; the near ground keeps more of its
    # contrast than the far ground
    hazy = Haze()(clean, HazeParams(torch.full((8,), 400.0), torch.full((8,), 0.95)), depth)
    assert float((hazy[:, :, :8, 12:] - 0.95).abs().max()) < 0.03
    kept = lambda rows: float(hazy[:, :, rows].std(dim=(1, 2, 3)).min() / clean[:, :, rows].std())  # noqa: E731
    assert kept(slice(-4, None)) > 1.25 * kept(slice(14, 18))  # measured: 0.175 vs 0.119
    # a distributed slice gets exactly the rows a single process would give those images
    part = patch_depth(8, 32, 24, torch.Generator().manual_seed(7), "outdoor", clean=clean[2:5],
                       rows=range(2, 5))
    assert torch.equal(part, depth[2:5])
    with pytest.raises(ValueError, match="needs the clean patches"):
        patch_depth(2, 8, 8, torch.Generator(), "outdoor")


def test_scene_wide_outdoor_depth_takes_a_third_of_each_mode():
    n, h, w = 90, 32, 24
    clean = _sky_and_ground(n=n, seed=4)
    mix = patch_depth(n, h, w, torch.Generator().manual_seed(5), "scene-wide-outdoor", clean=clean)
    crop = patch_depth(n, h, w, torch.Generator().manual_seed(5), "crop")
    is_crop = (mix == crop).flatten(1).all(dim=1)
    sky = sky_mask(clean)
    # outdoor rows: the sky is farther than any ground pixel
    far_sky = torch.where(sky, mix, float("inf")).amin(dim=(1, 2, 3)) > \
        torch.where(sky, 0.0, mix).amax(dim=(1, 2, 3))
    is_outdoor = far_sky & ~is_crop
    for count in (int(is_crop.sum()), int(is_outdoor.sum()), int((~is_crop & ~is_outdoor).sum())):
        assert 15 < count < 45  # about 30 each
    part = patch_depth(n, h, w, torch.Generator().manual_seed(5), "scene-wide-outdoor",
                       clean=clean[10:20], rows=range(10, 20))
    assert torch.equal(part, mix[10:20])
    cfg = validate_config({"data": {"train_roots": ["x"], "haze_depth": "scene-wide-outdoor"}})
    assert cfg.data.haze_depth == "scene-wide-outdoor"


# ---------------------------------------------------------------------------- per-degradation power


def test_level_power_per_degradation_lightens_only_the_named_one():
    uniform = DegradationPipeline().sample(2000, torch.Generator().manual_seed(5))
    noise3 = DegradationPipeline(level_power={"noise": 3}).sample(
        2000, torch.Generator().manual_seed(5))
    assert torch.equal(noise3.levels[:, :2], uniform.levels[:, :2])  # haze and rain as drawn
    u, v = uniform.levels[:, 2], noise3.levels[:, 2]
    active = u > 0
    assert torch.allclose(v[active], 50.0 * (u[active] / 50.0) ** 3, rtol=1e-4, atol=1e-4)
    # nearly clean noise (sigma <= 5 of 255) for (1/10)**(1/3) = 46% of the noisy images
    assert abs(float((v[active] <= 5.0).float().mean()) - 0.464) < 0.05
    same = DegradationPipeline(level_power={"haze": 2, "rain": 2, "noise": 2})
    two = DegradationPipeline(level_power=2)
    assert torch.equal(same.sample(50, torch.Generator().manual_seed(1)).levels,
                       two.sample(50, torch.Generator().manual_seed(1)).levels)
    for bad in ({"snow": 2}, {"noise": 0}, {"noise": float("nan")}):
        with pytest.raises(ValueError, match="level_power"):
            DegradationPipeline(level_power=bad)
    cfg = validate_config({"data": {"train_roots": ["x"], "level_power": {"noise": 3}}})
    assert cfg.data.level_power == {"noise": 3.0}
    with pytest.raises(ConfigError, match="level_power"):
        validate_config({"data": {"train_roots": ["x"], "level_power": {"noise": 20}}})


@pytest.mark.cuda
def test_cuda_matches_cpu_for_layered_rain():
    x = _batch(4)
    pipe = DegradationPipeline(combinations="rain,haze+rain+noise", rain_sampling="benchmark")
    p = pipe.sample(4, torch.Generator().manual_seed(0))
    cpu = pipe.apply(x, p)
    gpu = pipe.apply(x.cuda(), p.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)
