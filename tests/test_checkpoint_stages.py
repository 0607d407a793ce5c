"""Gradient checkpointing of the unfolded stages: a training setting (``train.checkpoint_stages``)
that gives the same gradients, and that older stored configs may still name."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import interir
from interir.config import load_config, validate_config
from interir.engine.checkpoint import save_checkpoint
from interir.loading import load_model
from interir.engine.train import train
from interir.models import unfolding
from interir.models.unfolding import set_stage_checkpointing
from interir.pretrained import WEIGHTS_DIR

DATA = Path(__file__).parent / "data"


def _gradients(model: torch.nn.Module, x: torch.Tensor):
    out = model.train()(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_checkpointing_the_stages_gives_the_same_output_and_gradients(monkeypatch):
    """Recomputing the stages in the backward pass only saves memory: same output, same gradients."""
    plain = interir.create_model("interir-tiny")
    checkpointed = interir.create_model("interir-tiny")
    checkpointed.load_state_dict(plain.state_dict())
    assert set_stage_checkpointing(checkpointed)
    recomputed = []
    real = unfolding.checkpoint
    monkeypatch.setattr(unfolding, "checkpoint", lambda *a, **k: recomputed.append(1) or real(*a, **k))
    x = torch.rand(2, 3, 24, 20)
    out_a, grad_a = _gradients(plain, x)
    assert not recomputed
    out_b, grad_b = _gradients(checkpointed, x)
    assert len(recomputed) == len(checkpointed.stages) > 0  # every stage went through checkpoint
    torch.testing.assert_close(out_b, out_a)
    assert grad_a.keys() == grad_b.keys() and any(g.abs().sum() > 0 for g in grad_a.values())
    for name in grad_a:
        torch.testing.assert_close(grad_b[name], grad_a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_models_without_stages_say_so():
    assert not set_stage_checkpointing(interir.create_model("nafnet-small"))
    with pytest.raises(ValueError, match="checkpoint_stages"):
        interir.create_model("interir-tiny", checkpoint_stages=True)  # not architecture any more


def _old_style(path: Path, model: torch.nn.Module) -> None:
    """Rewrite a checkpoint's descriptions as interir wrote them before: with checkpoint_stages."""
    meta = json.loads((path / "model.json").read_text())
    meta["config"]["checkpoint_stages"] = True
    (path / "model.json").write_text(json.dumps(meta))
    header = {"format": "interir-checkpoint", "format_version": "1", "model_name": "interir-tiny",
              "config": json.dumps(meta["config"], sort_keys=True)}
    save_file(model.state_dict(), str(path / "alone.safetensors"), metadata=header)


def test_a_stored_config_with_checkpoint_stages_still_loads(tmp_path):
    model = interir.create_model("interir-tiny").eval()
    save_checkpoint(tmp_path / "ck", model)
    _old_style(tmp_path / "ck", model)
    x = torch.rand(1, 3, 16, 16)
    for spec in (tmp_path / "ck", tmp_path / "ck" / "alone.safetensors"):
        loaded = load_model(spec)
        assert not loaded.checkpoint_stages and "checkpoint_stages" not in vars(loaded.config)
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # the stage-5 default was stored with the key (its header is sha256-checked, so it stays)
    assert "checkpoint_stages" in json.loads((WEIGHTS_DIR / "default-v1.json").read_text())["config"]
    assert interir.load_pretrained("default-v1").model_name == "interir-base"


def test_older_configs_setting_it_as_a_model_override_are_read_as_the_training_key():
    base = {"data": {"train_roots": ["x"]},
            "model": {"name": "interir-tiny", "overrides": {"checkpoint_stages": True, "width": 8}}}
    cfg = validate_config(base)
    assert cfg.train.checkpoint_stages is True and cfg.model.overrides == {"width": 8}
    explicit = validate_config({**base, "train": {"checkpoint_stages": False}})
    assert explicit.train.checkpoint_stages is False
    assert validate_config({"data": {"train_roots": ["x"]}}).train.checkpoint_stages is False


def _cfg(tmp_path, name, *overrides):
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8}},
        "data": {"train_roots": [str(DATA)], "patch_size": 32},
        "train": {"iterations": 2, "batch_size": 2, "threads": 1, "log_every": 1, "ckpt_every": 0,
                  "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": name, "tensorboard": "off"},
    }
    return load_config(None, list(overrides), base=base)


def test_the_trainer_applies_it_and_trains_the_same(tmp_path, monkeypatch):
    plain = train(_cfg(tmp_path, "plain"))
    recomputed = []
    real = unfolding.checkpoint
    monkeypatch.setattr(unfolding, "checkpoint", lambda *a, **k: recomputed.append(1) or real(*a, **k))
    on = train(_cfg(tmp_path, "on", "train.checkpoint_stages=true"))
    assert len(recomputed) == 2 * 2  # 2 steps x 2 IPBlocks
    a, b = (load_model(r.run_dir / "checkpoints" / "last") for r in (plain, on))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert "checkpoint_stages" not in json.loads((on.run_dir / "checkpoints" / "last" / "model.json")
                                                 .read_text())["config"]
    with pytest.raises(ValueError, match="no unfolded stages"):
        train(_cfg(tmp_path, "naf", "model.name=nafnet-small", "model.overrides={}",
                   "train.checkpoint_stages=true"))
