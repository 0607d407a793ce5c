"""Shipped weights (sha256-checked) and the demo."""

import json

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import interir
from interir import pretrained
from interir.engine.checkpoint import save_checkpoint
from interir.loading import load_pretrained, ship_pretrained
from interir.metrics import psnr
from interir.utils.io import read_image

TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(pretrained, "REGISTRY_FILE", tmp_path / "registry.json")
    return tmp_path


def test_ship_then_load_roundtrip(weights_dir, tmp_path_factory):
    model = interir.create_model("interir-tiny")
    run = save_checkpoint(tmp_path_factory.mktemp("run") / "ckpt", model)
    path = ship_pretrained(run, "mini", steps=3)
    entry = json.loads((weights_dir / "registry.json").read_text())["mini"]
    assert entry["sha256"] == pretrained.sha256_of(path) and entry["steps"] == 3
    loaded = load_pretrained("mini")
    assert loaded.model_name == "interir-tiny" and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_modified_weights_are_refused(weights_dir, tmp_path_factory):
    run = save_checkpoint(tmp_path_factory.mktemp("run") / "ckpt", interir.create_model("interir-tiny"))
    path = ship_pretrained(run, "mini")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="corrupt or was modified"):
        load_pretrained("mini")


def test_unknown_name_lists_shipped(weights_dir):
    with pytest.raises(pretrained.PretrainedError, match="no shipped pretrained model named 'nope'"):
        load_pretrained("nope")


def test_shipped_default_model_loads_and_restores():
    """Every stored weight reaches the model, and it removes noise from a photo crop."""
    if "default" not in pretrained.list_pretrained():
        pytest.skip("no default model shipped in this checkout yet")
    model = interir.load_pretrained()
    stored = load_file(pretrained.pretrained_path("default"))
    state = model.state_dict()
    assert stored.keys() <= state.keys()
    for name, tensor in stored.items():
        torch.testing.assert_close(state[name], tensor.to(state[name].dtype), msg=name)
    clean = read_image(TEST_DATA / "astronaut.png").image[:, 40:104, 200:264].unsqueeze(0)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        out = model(noisy).clamp(0, 1)
    assert float(psnr(out, clean)) > float(psnr(noisy, clean)) + 2.0


def test_demo_writes_sheet_and_scores(tmp_path):
    from interir.demo import run_demo

    result = run_demo(tmp_path, model_spec="interir-tiny", seed=0)
    assert result.sheet.is_file() and (tmp_path / "restored.png").is_file()
    assert 5 < result.degraded_psnr < 25 and 0 < result.degraded_ssim < 1
    # Same seed, same degraded image: the demo is reproducible.
    again = run_demo(tmp_path / "again", model_spec="interir-tiny", seed=0)
    assert again.degraded_psnr == result.degraded_psnr


def test_shipped_default_restores_the_demo_photo(tmp_path):
    """The embedded model must actually restore: the demo's haze+rain+noise photo gains PSNR and SSIM."""
    if "default" not in pretrained.list_pretrained():
        pytest.skip("no default model shipped in this checkout yet")
    from interir.demo import run_demo

    result = run_demo(tmp_path, model_spec="default", seed=0)
    assert result.restored_psnr > result.degraded_psnr + 2.0
    assert result.restored_ssim > result.degraded_ssim + 0.1


def test_load_pretrained_accepts_a_path_as_well_as_a_name():
    import torch

    from interir.pretrained import pretrained_path

    by_name = interir.load_pretrained("default")
    by_path = interir.load_pretrained(pretrained_path("default"))
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(by_path(x), by_name(x))


def test_models_command_marks_the_shipped_weights():
    from typer.testing import CliRunner

    import interir.cli.models  # noqa: F401  (registers the command)
    from interir.cli.app import app

    out = CliRunner().invoke(app, ["models"]).output
    shipped = out.split("Architectures")[0]
    assert "default" in shipped and "interir-base" in shipped
    marked = [line.split()[0] for line in out.splitlines() if "[trained weights shipped]" in line]
    assert "interir-base" in marked and "nafnet" not in marked


def test_every_shipped_rematch_model_loads_checked_and_restores():
    """The four eb-* names of the equal-budget rematch ship, pass their sha256 check, and restore."""
    shipped = pretrained.list_pretrained()
    names = ["eb-interir-small", "eb-interir-small-xconv", "eb-deepsn-small", "eb-nafnet-small"]
    assert set(names) <= set(shipped)
    torch.manual_seed(0)
    clean = read_image(TEST_DATA / "chelsea.png").image[:, :96, :96].unsqueeze(0)
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)  # 20.0 dB
    for name in names:
        model = load_pretrained(name)
        assert not model.training
        with torch.no_grad():
            out = model(noisy).clamp(0, 1)
        # Measured: 22.9 (interir), 23.5 (xconv), 23.0 (deepsn), 29.3 dB (nafnet).
        assert float(psnr(out, clean)) > float(psnr(noisy, clean)) + 2.0, name


def test_default_recipe_configs_build_the_shipped_network():
    """scripts/train_default.sh retrains the shipped default: every stage's config must build the
    network its weights describe (interir-base became core v2 after the default was trained)."""
    from interir.config import load_config
    from interir.engine.checkpoint import CheckpointError, load_weights_into

    repo = Path(__file__).resolve().parents[1]
    script = (repo / "scripts/train_default.sh").read_text()
    stages = sorted(p for p in (repo / "configs").glob("cpu-default*.yaml")
                    if p.name in script and "v2" not in p.name)
    assert len(stages) >= 5
    weights = pretrained.WEIGHTS_DIR / "default.safetensors"
    for path in stages:
        cfg = load_config(path)
        model = interir.create_model(cfg.model.name, **cfg.model.overrides)
        assert load_weights_into(model, weights, use_ema=True) == [], path
    # and without the v1 overrides the registered interir-base no longer takes them
    with pytest.raises(CheckpointError, match="update_gate"):
        load_weights_into(interir.create_model("interir-base"), weights, use_ema=True)


def test_default_rain_removes_heavy_rain_that_the_default_leaves():
    """`default-rain` (stage 6: the stage-5 default fine-tuned on benchmark-like rain) ships checked
    and removes Rain100H-like heavy rain, which the stage-5 default (`default-v1`) barely touches;
    stages 7 and 8 (`default-real` and today's `default`) keep that."""
    from interir.degradations import DegradationPipeline

    clean = read_image(TEST_DATA / "chelsea.png").image.unsqueeze(0)
    pipe = DegradationPipeline(("rain",), levels={"rain": 200}, rain_sampling="heavy")
    rainy = pipe.apply(clean, pipe.sample(1, torch.Generator().manual_seed(3), combination="rain"))
    rainy = rainy.clamp(0, 1)
    scores = {}
    for name in ("default-v1", "default-rain", "default-real", "default"):
        with torch.no_grad():
            scores[name] = float(psnr(load_pretrained(name)(rainy).clamp(0, 1), clean))
    # Measured: input 10.17, default-v1 10.62, default-rain 19.52, default-real (stage 7) 20.35,
    # default (stage 8) 20.91 dB.
    assert scores["default-rain"] > float(psnr(rainy, clean)) + 6.0
    assert scores["default-rain"] > scores["default-v1"] + 6.0
    assert scores["default-real"] > scores["default-v1"] + 6.0  # stage 7 keeps what stage 6 learnt
    assert scores["default"] > scores["default-v1"] + 6.0  # and so does stage 8, the default
