"""Training engine: exact resume, run folder, time budget, paired data, validation, schedule."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interir.config import ConfigError, load_config
from interir.engine.checkpoint import CheckpointError, load_training_state
from interir.engine import train as train_module
from interir.data.training import StreamSampler
from interir.data.validation_pairs import build_val_pairs
from interir.engine.optim import lr_factor
from interir.engine.train import train
from interir.engine.validation import per_set_text
from interir.loading import load_model
from interir.utils.seed import restore_rng_state

DATA = Path(__file__).parent / "data"


def _cfg(tmp_path, name="run", *overrides):
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 2}},
        "data": {
            "train_roots": [str(DATA)],
            "patch_size": 32,
            "val": {"kind": "synthetic", "roots": [str(DATA)], "limit": 2, "crop": 32},
        },
        "optim": {"grad_clip": 0.5},
        "train": {"iterations": 8, "batch_size": 2, "threads": 1, "ema_decay": 0.9, "log_every": 2,
                  "val_every": 3, "ckpt_every": 0, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": name, "tensorboard": "off"},
    }
    return load_config(None, list(overrides), base=base)


def _weights(run_dir, kind="last"):
    folder = Path(run_dir) / "checkpoints" / kind
    return load_file(folder / "model.safetensors"), load_file(folder / "model_ema.safetensors")


@pytest.mark.parametrize("haze_depth", ["centre", "mixed", "scene"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch, haze_depth):
    extra = [f"data.haze_depth={haze_depth}", "data.haze_airlight=[0.7,1.0]"]
    if haze_depth == "scene":
        extra.append("loss.pixel=psnr")
    straight = train(_cfg(tmp_path, "straight", *extra))
    assert straight.reason == "completed" and straight.step == 8
    straight_rng = torch.get_rng_state()

    first = train(_cfg(tmp_path, "split", *extra), max_steps=4)
    assert first.reason == "max_steps" and first.step == 4
    assert load_training_state(first.run_dir / "checkpoints" / "last")["step"] == 4
    saved_rng = load_training_state(first.run_dir / "checkpoints" / "last")["extra"]["rng"]
    restored = []
    monkeypatch.setattr(train_module, "restore_rng_state",
                        lambda state: restored.append(state) or restore_rng_state(state))
    second = train(_cfg(tmp_path, "split", *extra), resume=True)
    assert second.reason == "completed" and second.step == 8
    # The global generators saved at step 4 are restored (today's trainer derives every random
    # draw from the step, so nothing else shows whether they were).
    assert len(restored) == 1 and torch.equal(restored[0]["torch"], saved_rng["torch"])
    assert torch.equal(torch.get_rng_state(), straight_rng)

    (w1, e1), (w2, e2) = _weights(straight.run_dir), _weights(second.run_dir)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
        assert torch.equal(e1[k], e2[k]), k
    # the optimizer state and the schedule agree too
    s1 = load_training_state(straight.run_dir / "checkpoints" / "last")
    s2 = load_training_state(second.run_dir / "checkpoints" / "last")
    assert s1["scheduler"]["last_epoch"] == s2["scheduler"]["last_epoch"] == 8
    for k, v in s1["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg"], s2["optimizer"]["state"][k]["exp_avg"])
    # the metric logs match as well (rows of the interrupted session are not duplicated)
    rows = lambda r: [(x["kind"], x["step"], x.get("loss"), x.get("psnr"))  # noqa: E731
                      for x in map(json.loads, (r / "metrics.jsonl").read_text().splitlines())]
    assert rows(straight.run_dir) == rows(second.run_dir)
    assert straight.best == second.best


def test_run_folder_contents(tmp_path):
    res = train(_cfg(tmp_path, "r", "train.iterations=4", "train.val_every=2"))
    d = res.run_dir
    for name in ("config.yaml", "run.json", "train.log", "metrics.csv", "metrics.jsonl", "summary.json"):
        assert (d / name).is_file(), name
    info = json.loads((d / "run.json").read_text())
    assert info["seed"] == 0 and info["interir_version"]
    assert "commit" in info["git"] and info["sessions"][0]["environment"]["torch"] == torch.__version__
    assert load_config(d / "config.yaml") == _cfg(tmp_path, "r", "train.iterations=4", "train.val_every=2")
    with open(d / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert [int(r["step"]) for r in train_rows] == [2, 4]
    assert all(float(r["images_per_s"]) > 0 and float(r["loss"]) > 0 for r in train_rows)
    assert [int(r["step"]) for r in val_rows] == [2, 4]
    assert all(5 < float(r["psnr"]) < 60 and 0 < float(r["ssim"]) <= 1 for r in val_rows)
    # best checkpoint = best validation PSNR, and it loads for inference (EMA weights)
    best_psnr = max(float(r["psnr"]) for r in val_rows)
    assert res.best["psnr"] == pytest.approx(best_psnr, abs=1e-4)
    model = load_model(d)
    assert model.checkpoint_meta["step"] == res.best["step"]
    assert "step 4/4" in (d / "train.log").read_text()


def test_existing_run_folder_needs_resume_or_overwrite(tmp_path):
    train(_cfg(tmp_path, "x", "train.iterations=2", "train.val_every=0", "data.val.kind=none"))
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tmp_path, "x", "train.iterations=2"))
    res = train(_cfg(tmp_path, "x", "train.iterations=2", "data.val.kind=none"), overwrite=True)
    assert res.step == 2
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(tmp_path, "fresh", "train.iterations=2"), resume=True)


def test_resume_with_another_architecture_fails(tmp_path):
    train(_cfg(tmp_path, "a", "train.iterations=4", "data.val.kind=none"), max_steps=2)
    with pytest.raises(CheckpointError, match="width: checkpoint 8 vs model 12"):
        train(_cfg(tmp_path, "a", "train.iterations=4", "data.val.kind=none", "model.overrides.width=12"),
              resume=True)


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path):
    res = train(_cfg(tmp_path, "t", "train.iterations=1000", "train.max_minutes=0.0001", "data.val.kind=none"))
    assert res.reason == "time_budget" and 1 <= res.step < 1000
    assert load_training_state(res.run_dir / "checkpoints" / "last")["step"] == res.step
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["reason"] == "time_budget"


def test_paired_training_and_paired_validation(tmp_path):
    from interir.utils.io import read_image, write_image

    root = tmp_path / "pairs"
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    for f in sorted(DATA.glob("*.png"))[:2]:
        clean = read_image(f).image[:, :40, :48]
        write_image(root / "target" / f.name, clean)
        write_image(root / "input" / f.name, (clean * 0.7 + 0.2).clamp(0, 1))
    cfg = _cfg(tmp_path, "p", "data.train_roots=[]", f"data.paired_roots=[{root}]", "train.iterations=2",
               "data.val.kind=paired", f"data.val.roots=[{root}]", "train.val_every=0")
    res = train(cfg)
    assert res.step == 2 and res.best is not None and res.best["psnr"] > 5


def test_validation_pairs_are_fixed_and_cover_combinations(tmp_path):
    cfg = _cfg(tmp_path, "v", "data.val.limit=7", "data.val.crop=24")
    a, b = build_val_pairs(cfg), build_val_pairs(cfg)
    assert len(a) == 7
    assert len({p["name"].split("/")[0] for p in a}) == 7  # one per combination
    assert all(p["input"].shape == (3, 24, 24) for p in a)
    assert all(torch.equal(x["input"], y["input"]) for x, y in zip(a, b))
    only = build_val_pairs(_cfg(tmp_path, "v", "data.val.include=[coffee.png]", "data.val.limit=3"))
    assert {p["name"].split("/")[1] for p in only} == {"coffee"}


def test_validation_sets_are_pooled_and_scored_each(tmp_path):
    from interir.config import validate_config
    from interir.engine.validation import validate

    cfg = _cfg(tmp_path, "v", "data.val.limit=3", "data.val.crop=24")
    data = cfg.model_dump()
    first = data["data"]["val"]
    second = {**first, "combinations": ["haze"], "limit": 2, "seed": 9, "haze_depth": "scene",
              "haze_airlight": [0.9, 1.0]}
    data["data"]["val"] = [first, second]
    both = validate_config(data)
    pairs = build_val_pairs(both)
    assert [p["set"] for p in pairs] == [0, 0, 0, 1, 1]
    assert all(torch.equal(p["input"], q["input"]) for p, q in zip(pairs, build_val_pairs(cfg)))
    assert all(p["name"].startswith("haze/") for p in pairs[3:])

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    res = validate(Identity(), pairs, torch.device("cpu"))
    from interir.metrics import psnr_ssim

    each = [float(psnr_ssim(p["input"][None], p["target"][None])[0]) for p in pairs]
    assert res["sets"][0]["psnr"] == pytest.approx(sum(each[:3]) / 3, abs=1e-4)
    assert res["sets"][1]["psnr"] == pytest.approx(sum(each[3:]) / 2, abs=1e-4)
    assert res["psnr"] == pytest.approx(sum(each) / 5, abs=1e-4) and res["val_images"] == 5
    assert per_set_text(res).startswith(f"  [set 0: {res['sets'][0]['psnr']:.3f}, set 1: ")
    assert per_set_text(validate(Identity(), pairs[:3], torch.device("cpu"))) == ""


def test_validation_rain_style_is_the_sets_own(tmp_path):
    """A set's rain_style picks the rain recipe of its pairs; it defaults to classic, not to the
    training style, so an existing set keeps its pairs when the training data change."""
    base = ("data.val.limit=7", "data.val.crop=48")
    before = build_val_pairs(_cfg(tmp_path, "v", *base))
    unchanged = build_val_pairs(_cfg(tmp_path, "v", *base, "data.rain_style=benchmark"))
    styled = build_val_pairs(_cfg(tmp_path, "v", *base, "data.val.rain_style=heavy"))
    assert all(torch.equal(p["input"], q["input"]) for p, q in zip(before, unchanged))
    assert [p["name"] for p in before] == [p["name"] for p in styled]
    for p, q in zip(before, styled):
        if "rain" in p["name"].split("/")[0]:
            assert not torch.equal(p["input"], q["input"]), p["name"]
    with pytest.raises(ConfigError, match="rain_style"):
        _cfg(tmp_path, "v", "data.val.rain_style=drizzle")


def test_lr_schedule_is_cosine_from_lr_to_lr_final():
    lr, lr_final, n = 2e-4, 1e-6, 100
    rate = lambda s: lr * lr_factor(s, n, lr, lr_final)  # noqa: E731
    assert rate(0) == pytest.approx(lr)
    assert rate(n) == pytest.approx(lr_final)
    assert rate(n // 2) == pytest.approx((lr + lr_final) / 2)
    assert rate(25) == pytest.approx(lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi / 4)))
    assert lr * lr_factor(0, n, lr, lr_final, warmup=10) == pytest.approx(lr / 10)
    assert lr * lr_factor(10, n, lr, lr_final, warmup=10) == pytest.approx(lr)


def test_stream_sampler_epochs_and_rank_split():
    def take(sampler, k):
        it = iter(sampler)
        return [next(it) for _ in range(k)]

    one = take(StreamSampler(n=5, seed=3, global_batch=4, rank=0, per_rank=4, start_step=0), 20)
    # every epoch (5 consecutive positions) is a permutation; seeds are distinct
    for e in range(4):
        assert sorted(i for i, _ in one[5 * e: 5 * e + 5]) == list(range(5))
    assert len({s for _, s in one}) == 20
    # two ranks with 2 each see exactly the single-process stream, batch by batch
    r0 = take(StreamSampler(5, 3, 4, 0, 2, 0), 10)
    r1 = take(StreamSampler(5, 3, 4, 1, 2, 0), 10)
    merged = [x for s in range(5) for x in r0[2 * s: 2 * s + 2] + r1[2 * s: 2 * s + 2]]
    assert merged == one
    # resuming at step 3 continues the stream
    assert take(StreamSampler(5, 3, 4, 0, 4, 3), 8) == one[12:20]


def test_init_from_can_grow_a_trained_network_only_when_asked(tmp_path):
    base = train(_cfg(tmp_path, "base", "train.iterations=2", "train.val_every=0"))
    source = str(base.run_dir / "checkpoints" / "last")
    grown = ["model.overrides.airlight_stats=true", f"train.init_from={source}", "train.iterations=2",
             "train.val_every=0"]
    with pytest.raises(CheckpointError, match="missing keys"):
        train(_cfg(tmp_path, "strict", *grown))
    run = train(_cfg(tmp_path, "grown", *grown, "train.init_missing_ok=true"))
    assert run.reason == "completed"
    assert "kept at their initialisation" in (run.run_dir / "train.log").read_text()
    assert "global_stats.proj.weight" in load_file(run.run_dir / "checkpoints" / "last" / "model.safetensors")


def test_gain_learning_rate_trains_the_gates_faster_and_resumes(tmp_path):
    """optim.gain_lr_scale: the stage gates move gain_lr_scale times further in the first step."""
    plain = train(_cfg(tmp_path, "plain", "data.val.kind=none"), max_steps=1)
    fast = train(_cfg(tmp_path, "fast", "data.val.kind=none", "optim.gain_lr_scale=10"), max_steps=1)
    gate = "final_resm.update_gate"
    moved = [_weights(r.run_dir)[0][gate].abs().max() for r in (plain, fast)]
    assert float(moved[1]) == pytest.approx(10 * float(moved[0]), rel=1e-3)  # Adam: first step = lr
    resumed = train(_cfg(tmp_path, "fast", "data.val.kind=none", "optim.gain_lr_scale=10"), resume=True)
    assert resumed.reason == "completed" and resumed.step == 8
