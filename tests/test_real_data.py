"""Real data in training (issue 26): the mix of sources, real pairs with added degradations,
haze on real depth (Middlebury layout), named validation sets. Tiny folders in tmp_path only."""

import math
from collections import Counter

import pytest
import torch

from interir.config import ConfigError, load_config, validate_config
from interir.data.depth import DepthImageDataset, depth_from_disparity, fill_unknown, find_depth_pairs
from interir.data.mixing import CYCLE, MixedStreamSampler, MixPattern
from interir.data.training import TrainingBatches
from interir.data.validation_pairs import build_val_pairs
from interir.degradations import DegradationParams, DegradationPipeline
from interir.engine.train import train
from interir.engine.validation import per_set_text
from interir.utils.io import write_image


RAIN = 77 / 255  # what the "rain" of the tiny pairs adds


def _image(h, w, seed):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def _folders(tmp_path):
    """clean/ (3 photos), pairs/rain|norain (3 pairs: constant clean colour, a brighter rainy
    side), depth/Scene/view1|disp1 (a 32 x 32 gray view: near left half, far right half, holes)."""
    for k in range(3):
        write_image(tmp_path / "clean" / f"c{k}.png", _image(40, 44, k))
        norain = torch.full((3, 36, 40), (26 + 51 * k) / 255)  # on the 8-bit grid: exact in PNG
        write_image(tmp_path / "pairs" / "norain" / f"{k}.png", norain)
        write_image(tmp_path / "pairs" / "rain" / f"{k}.png", norain + RAIN)
    disp = torch.full((32, 32), 200.0 / 255)
    disp[:, 16:] = 50.0 / 255
    disp[5:8, 20:23] = 0  # unknown disparity, filled from its (far) neighbours
    write_image(tmp_path / "depth" / "Scene" / "view1.png", torch.full((3, 32, 32), 0.2))
    write_image(tmp_path / "depth" / "Scene" / "disp1.png", disp.expand(3, -1, -1))
    return tmp_path


def _mix_cfg(tmp_path, *overrides):
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 2}},
        "data": {"train_roots": [str(tmp_path / "clean")], "paired_roots": [str(tmp_path / "pairs")],
                 "paired_fraction": 0.25, "paired_combinations": ["noise"],
                 "paired_degrade_fraction": 1.0, "depth_roots": [str(tmp_path / "depth")],
                 "depth_fraction": 0.25, "patch_size": 32, "augment": False,
                 "combinations": ["haze"]},
        "train": {"iterations": 4, "batch_size": 8, "threads": 1, "device": "cpu", "log_every": 2,
                  "val_every": 0, "ckpt_every": 0},
        "output": {"dir": str(tmp_path / "runs"), "name": "mix", "tensorboard": "off"},
    }
    return load_config(None, list(overrides), base=base)


def test_mix_config_rules():
    both = {"train_roots": ["a"], "paired_roots": ["b"]}
    with pytest.raises(ConfigError, match="set data.paired_fraction"):
        validate_config({"data": both})
    with pytest.raises(ConfigError, match="use haze, noise or haze\\+noise"):
        validate_config({"data": {**both, "paired_fraction": 0.2, "paired_combinations": ["haze+rain"]}})
    with pytest.raises(ConfigError, match="leaves no samples for data.train_roots"):
        validate_config({"data": {**both, "paired_fraction": 0.6, "depth_roots": ["c"],
                                  "depth_fraction": 0.4}})
    with pytest.raises(ConfigError, match="must be 1 without data.train_roots"):
        validate_config({"data": {"paired_roots": ["b"], "paired_fraction": 0.5, "depth_roots": ["c"],
                                  "depth_fraction": 0.3}})
    with pytest.raises(ConfigError, match="data.depth_fraction is set but data.depth_roots is empty"):
        validate_config({"data": {"train_roots": ["a"], "depth_fraction": 0.3}})
    cfg = validate_config({"data": {**both, "paired_fraction": 0.2, "paired_combinations": ["noise", "haze"]}})
    assert sorted(cfg.data.paired_combinations) == ["haze", "noise"]


def test_stream_holds_each_source_at_its_share_and_resumes():
    shares = [0.6, 0.25, 0.15]
    mix = MixPattern(shares, seed=3)
    counts = Counter(mix.source(p) for p in range(5 * CYCLE))
    assert [counts[k] for k in range(3)] == [3000, 1250, 750]  # exact per cycle
    for start in range(0, 2 * CYCLE, 40):  # every stretch of 40 positions, not just the total
        window = Counter(mix.source(p) for p in range(start, start + 40))
        assert all(abs(window[k] - 40 * s) <= 2 for k, s in enumerate(shares)), window
    assert mix.draws_before(2345, 1) == sum(mix.source(p) == 1 for p in range(2345))
    other = MixPattern(shares, seed=4)
    assert [mix.source(p) for p in range(50)] != [other.source(p) for p in range(50)]
    sampler = MixedStreamSampler([10, 4, 2], shares, seed=3, global_batch=4, rank=0, per_rank=4,
                                 start_step=0)
    it = iter(sampler)
    keys = [next(it) for _ in range(40)]
    it = iter(MixedStreamSampler([10, 4, 2], shares, 3, 4, 0, 4, start_step=6))
    assert [next(it) for _ in range(16)] == keys[24:]
    # Within a source, one epoch covers every item once before any repeats.
    paired = [i for k, i, _ in keys if k == 1]
    assert sorted(paired[:4]) == [0, 1, 2, 3]


def test_depth_pairs_follow_the_middlebury_names(tmp_path):
    gray = torch.full((3, 8, 8), 0.5)
    for rel in ["A/view1.png", "A/disp1.png", "A/view5.png", "A/disp5.png", "B/view.png", "B/disp.png",
                "C/im2.png", "C/disp2.png"]:
        write_image(tmp_path / "ok" / rel, gray)
    from PIL import Image
    (tmp_path / "ok" / "D").mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "ok" / "D" / "scene1.row3.col3.ppm")
    Image.new("L", (8, 8), 40).save(tmp_path / "ok" / "D" / "truedisp.row3.col3.pgm")
    pairs = [(v.relative_to(tmp_path / "ok").as_posix(), d.name) for v, d in find_depth_pairs(tmp_path / "ok")]
    assert pairs == [("A/view1.png", "disp1.png"), ("A/view5.png", "disp5.png"), ("B/view.png", "disp.png"),
                     ("C/im2.png", "disp2.png"), ("D/scene1.row3.col3.ppm", "truedisp.row3.col3.pgm")]
    ds = DepthImageDataset(tmp_path / "ok")
    assert ds[4]["image"].shape == (3, 8, 8) and ds[4]["depth"].shape == (1, 8, 8)
    write_image(tmp_path / "bad" / "E" / "view1.png", gray)
    write_image(tmp_path / "bad" / "E" / "view2.png", gray)
    write_image(tmp_path / "bad" / "E" / "disp1.png", gray)
    with pytest.raises(ValueError, match="view2.png: no disparity file"):
        find_depth_pairs(tmp_path / "bad")


def test_unknown_disparity_is_filled_and_depth_is_its_inverse():
    disp = torch.tensor([[4.0, 4.0, 1.0, 1.0],
                         [4.0, 0.0, 0.0, 1.0],
                         [4.0, 4.0, 1.0, 1.0]])
    filled = fill_unknown(disp)
    assert bool((filled > 0).all())
    assert filled[1, 1] == 1.0 and filled[1, 2] == 1.0  # the farther neighbour wins
    assert torch.equal(filled[disp > 0], disp[disp > 0])
    depth = depth_from_disparity(disp, far=16.0)[0]
    assert depth.max() == pytest.approx(16.0)
    assert float(depth[0, 0] / depth[0, 3]) == pytest.approx(0.25)  # 4x the disparity, 1/4 the depth
    with pytest.raises(ValueError, match="no known"):
        fill_unknown(torch.zeros(3, 3))


def test_mixed_batches_keep_targets_record_draws_and_resume(tmp_path):
    cfg = _mix_cfg(_folders(tmp_path))
    tb = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 8, 0)
    assert tb.mixed and tb.shares == [0.5, 0.25, 0.25]
    sources, seen = Counter(), []
    for step in range(4):
        x, y = tb.get(step)
        seen.append((x, y))
        for row, rec in enumerate(tb.last_records):
            sources[rec["source"]] += 1
            if rec["source"] == "paired":
                colour = float(y[row, 0, 0, 0])
                assert torch.allclose(y[row], torch.full_like(y[row], colour), atol=1e-6)  # clean kept
                assert rec["noise_level"] > 0 and rec["rain_level"] == 0 and rec["haze_level"] == 0
                raw = (y[row] + RAIN)[None]  # the pair's own rainy patch
                again = DegradationPipeline(["noise"]).apply(raw, DegradationParams.from_records([rec]))
                assert torch.allclose(x[row], again[0], atol=1e-5)  # the record reproduces the input
            if rec["source"] == "depth":  # haze by t = exp(-beta d) on the real depth
                beta, a = rec["haze_level"] / 1000, rec["haze_airlight"]
                near, far = 16.0 * 50 / 200, 16.0
                for cols, d in ((slice(0, 8), near), (slice(24, 32), far)):
                    t = math.exp(-beta * d)
                    expect = 0.2 * t + a * (1 - t)
                    assert torch.allclose(x[row, :, :, cols], torch.full_like(x[row, :, :, cols], expect),
                                          atol=3e-3), (cols, expect)
    assert sources == Counter({"synthetic": 16, "paired": 8, "depth": 8})
    resumed = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 8, 3)
    x3, y3 = resumed.get(3)
    assert torch.equal(x3, seen[3][0]) and torch.equal(y3, seen[3][1])


def test_lone_pairs_keep_the_plain_path(tmp_path):
    _folders(tmp_path)
    cfg = _mix_cfg(tmp_path, "data.train_roots=[]", "data.depth_roots=[]", "data.paired_fraction=null",
                   "data.depth_fraction=null", "data.paired_combinations=[]")
    tb = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 8, 0)
    x, y = tb.get(0)
    assert not tb.mixed and tb.kind == "paired"
    assert torch.allclose(x, y + RAIN, atol=1e-6)  # the pairs as they are


def test_mixed_training_runs_with_named_validation_sets(tmp_path):
    _folders(tmp_path)
    val = [{"kind": "paired", "name": "real_rain", "roots": [str(tmp_path / "pairs")], "crop": None},
           {"kind": "synthetic", "name": "held_out", "roots": [str(tmp_path / "clean")], "limit": 2,
            "crop": 32}]
    cfg = _mix_cfg(tmp_path)
    cfg = validate_config({**cfg.model_dump(), "data": {**cfg.data.model_dump(), "val": val}})
    pairs = build_val_pairs(cfg)
    assert Counter(p["set"] for p in pairs) == {0: 3, 1: 2}
    res = train(cfg)
    assert res.step == 4 and res.best is not None
    log = (res.run_dir / "train.log").read_text()
    assert "training mix: synthetic 50% (3), paired 25% (3), depth 25% (1)" in log
    assert "[real_rain: " in log and ", held_out: " in log
    text = per_set_text({"sets": {0: {"psnr": 20.0}, 1: {"psnr": 21.5}}}, names={0: "real_rain"})
    assert text == "  [real_rain: 20.000, set 1: 21.500]"


def test_two_processes_see_the_single_process_batch(tmp_path):
    cfg = _mix_cfg(_folders(tmp_path), "data.augment=true", "data.haze_depth=scene")
    one = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 8, 0)
    halves = [TrainingBatches(cfg, torch.device("cpu"), r, 2, 4, 0) for r in range(2)]
    for step in range(3):
        x, y = one.get(step)
        parts = [h.get(step) for h in halves]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert halves[0].last_records + halves[1].last_records == one.last_records


def test_real_depth_validation_holds_out_its_scenes(tmp_path):
    _folders(tmp_path)
    for scene in ("Held", "Other"):
        write_image(tmp_path / "depth" / scene / "view.png", _image(32, 32, 9))
        write_image(tmp_path / "depth" / scene / "disp.png", torch.full((3, 32, 32), 0.5))
    (tmp_path / "val.txt").write_text("# held-out scenes\nHeld\n")
    val = {"kind": "synthetic", "name": "real_haze", "roots": [str(tmp_path / "depth")],
           "include": [str(tmp_path / "val.txt")], "haze_depth": "real", "combinations": ["haze"],
           "limit": None, "crop": None, "seed": 5}
    cfg = _mix_cfg(tmp_path, f"data.exclude=[{tmp_path / 'val.txt'}]")
    cfg = validate_config({**cfg.model_dump(), "data": {**cfg.data.model_dump(), "val": val}})
    pairs = build_val_pairs(cfg)
    assert [p["name"] for p in pairs] == ["haze/Held/view"]
    assert torch.equal(pairs[0]["input"], build_val_pairs(cfg)[0]["input"])  # fixed pairs
    assert float((pairs[0]["input"] - pairs[0]["target"]).abs().mean()) > 0.01  # hazed
    tb = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 8, 0)
    assert tb.dataset.sources[2].datasets[0].names == ["Other/view", "Scene/view1"]  # Held left out
