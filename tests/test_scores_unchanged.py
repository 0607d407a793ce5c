"""Scores recorded before issue 18's restructuring (one suite reader, one scoring loop).

A tiny training run's validation numbers and the eval numbers of a tiny synthetic suite, written
down as they were computed before the change: any change to how pairs are read, ordered, restored
or scored shows up here as a different number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interir.config import load_config
from interir.data.synthetic import synthesize_suite
from interir.engine.evaluate import EvalOptions, evaluate
from interir.engine.train import train
from interir.loading import load_model
from interir.utils.io import read_image, write_image

DATA = Path(__file__).parent / "data"
# The v1 forms: a fresh network already changes its input (a fresh v2 one returns it exactly).
V1 = {"width": 8, "stages": 2, "stage_update": "subtract", "output_skip": "input"}

# Float rounding only (the explainable conv's faster forms sum in another order); any change of
# pairs, order, clamping or metric moves a score by far more.
TOLERANCE = 1e-4
# (step, psnr, ssim) of each validation row of the run below.
VALIDATION = [(2, 19.04047487696611, 0.5313102809990645),
              (4, 19.101557561905356, 0.5357451454513669)]
# (model, combination, name) -> (input psnr, output psnr, output ssim) on the suite below.
EVALUATION = {
    ('run', 'haze', 'astronaut'): (6.503984065334892, 6.56969165157811, 0.2169721388775417),
    ('run', 'haze', 'camera'): (8.020543037511624, 8.0974808200483, 0.27343555349026644),
    ('run', 'noise', 'astronaut'): (20.700221816313203, 20.13113966686804, 0.5913533207235525),
    ('run', 'noise', 'camera'): (31.072976135546213, 27.535900945478254, 0.8658978055832207),
    ('run', 'rain+noise', 'astronaut'): (18.672245585070073, 18.32643806647601, 0.6036072734013285),
    ('run', 'rain+noise', 'camera'): (13.620570172494551, 13.550066312068978, 0.39474592788318186),
}


# The photos tests/data held when the scores were recorded: the run reads a copy of exactly these,
# so a photo added to tests/data for another test cannot change its data.
RECORDED_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png")


def _run(tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in RECORDED_PHOTOS:
        (photos / name).write_bytes((DATA / name).read_bytes())
    base = {
        "model": {"name": "interir-tiny", "overrides": V1},
        "data": {"train_roots": [str(photos)], "patch_size": 32,
                 "val": {"kind": "synthetic", "roots": [str(photos)], "limit": 3, "crop": 40}},
        "train": {"iterations": 4, "batch_size": 2, "threads": 1, "log_every": 2, "val_every": 2,
                  "ckpt_every": 0, "device": "cpu"},
        "output": {"dir": str(tmp_path / "runs"), "name": "golden", "tensorboard": "off"},
    }
    return train(load_config(None, [], base=base))


def _suite(tmp_path: Path) -> Path:
    clean = tmp_path / "clean"
    for name in ("astronaut", "camera"):
        image = read_image(DATA / f"{name}.png").image
        write_image(clean / f"{name}.png", image[:, 100:140, 120:164])
    synthesize_suite(clean, tmp_path / "suite", seed=3, combinations="haze,noise,rain+noise")
    return tmp_path / "suite"


def test_validation_and_eval_scores_are_unchanged(tmp_path):
    result = _run(tmp_path)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    got = [(r["step"], r["psnr"], r["ssim"]) for r in rows if r["kind"] == "val"]
    assert [step for step, _, _ in got] == [step for step, _, _ in VALIDATION]
    for (_, psnr, ssim), (_, want_psnr, want_ssim) in zip(got, VALIDATION):
        assert (psnr, ssim) == pytest.approx((want_psnr, want_ssim), abs=TOLERANCE)
    model = load_model(result.run_dir / "checkpoints" / "last")
    report = evaluate({"run": model}, [_suite(tmp_path)], EvalOptions(device="cpu"))
    scores = {(r.model, r.combination, r.name): (r.input_psnr, r.output_psnr, r.output_ssim)
              for r in report.results}
    assert list(scores) == list(EVALUATION)
    for key, value in EVALUATION.items():
        assert scores[key] == pytest.approx(value, abs=TOLERANCE), key
