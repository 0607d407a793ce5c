"""benchmarks/stage_gains.py: per-stage PSNR and shares of the gain over a synth-style suite."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stage_gains():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import stage_gains
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return stage_gains


def _suite(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for combination in ("haze", "noise"):
        for name in ("a", "b"):
            clean = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
            for sub, image in (("target", clean), ("input", noisy)):
                (root / combination / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / combination / sub / f"{name}.png")
    return root


def test_picks_the_first_images_of_each_combination(stage_gains, tmp_path):
    pairs = stage_gains.suite_pairs(_suite(tmp_path), per_combination=1)
    assert [(c, i.name) for c, i, _ in pairs] == [("haze", "a.png"), ("noise", "a.png")]
    with pytest.raises(SystemExit, match="interir synth"):
        stage_gains.suite_pairs(tmp_path / "haze" / "input", per_combination=1)


def test_shares_add_up_and_the_refinement_is_its_own_entry(stage_gains, tmp_path, monkeypatch):
    pairs = stage_gains.suite_pairs(_suite(tmp_path), per_combination=2)
    # A fresh v2 network is the identity: no gain, so every share is undefined, not a division error.
    fresh = stage_gains.measure("interir-tiny", pairs)
    assert fresh["images"] == 4 and fresh["refined"] is None
    assert fresh["output"] == pytest.approx(fresh["input"], abs=1e-6)
    assert math.isnan(fresh["unfolding_share"])
    # Perturbed gates: the stages now change the image; their shares sum to the unfolding's, and
    # a network with a refinement gets a separate refinement share, the two summing to one.
    for spec in ("interir-tiny", "interir-base"):
        model = stage_gains.load_model(spec, "cpu")
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():  # the zero-initialised gates (and biases) open a little
                    p.add_(0.05)
        monkeypatch.setattr(stage_gains, "load_model", lambda *_a, _m=model, **_k: _m)
        got = stage_gains.measure(spec, pairs)
        assert got["output"] == pytest.approx(got["refined"] if got["refined"] is not None else got["stages"][-1])
        assert sum(got["stage_shares"]) == pytest.approx(got["unfolding_share"])
        refinement = got["refinement_share"] or 0.0
        assert got["unfolding_share"] + refinement == pytest.approx(1.0)
        assert (got["refinement_share"] is None) == (spec == "interir-tiny")
        monkeypatch.undo()
    text = stage_gains.render({"command": "x", "machine": "m", "torch": "t", "suite": "s",
                               "per_combination": 2, "seconds": 1.0, "models": [fresh, got]})
    assert "| `interir-tiny` |" in text and "| `interir-base` |" in text and "refined" in text
