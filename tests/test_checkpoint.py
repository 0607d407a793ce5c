"""Checkpoints: safetensors + JSON, atomic writes, architecture checks, no unpickling."""

import json
import types

import pytest
import torch

import interir
from interir.engine import checkpoint as ckpt
from interir.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_training_state,
    load_weights_into,
    resolve_checkpoint,
    save_checkpoint,
)
from interir.loading import load_model
from interir.engine.ema import ModelEMA


def _tiny(**kw):
    return interir.create_model("interir-tiny", width=8, stages=2, **kw)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_folder_round_trip_rebuilds_the_model(tmp_path):
    model = _tiny()
    out = save_checkpoint(tmp_path / "ck", model, step=7, metrics={"psnr": 20.5})
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_name"] == "interir-tiny" and meta["config"]["width"] == 8 and meta["step"] == 7
    loaded = load_model(out)
    assert not loaded.training and loaded.config == model.config and _same_weights(model, loaded)
    x = torch.rand(1, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), loaded(x))


def test_tuple_configs_come_back_as_tuples(tmp_path):
    model = interir.create_model("nafnet-small")
    save_checkpoint(tmp_path / "n", model)
    loaded = load_model(tmp_path / "n")
    assert loaded.config == model.config
    assert isinstance(loaded.config.encoder_blocks, tuple)


def test_single_safetensors_file_is_self_contained(tmp_path):
    model = _tiny()
    path = save_checkpoint(tmp_path / "w.safetensors", model)
    assert (tmp_path / "w.json").is_file()
    (tmp_path / "w.json").unlink()  # the header alone is enough
    loaded = load_model(path)
    assert loaded.model_name == "interir-tiny" and _same_weights(model, loaded)
    with pytest.raises(ValueError, match="weights only"):
        save_checkpoint(tmp_path / "x.safetensors", model, optimizer=torch.optim.Adam(model.parameters()))


def test_ema_weights_are_preferred_for_inference(tmp_path):
    model = _tiny()
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    save_checkpoint(tmp_path / "ck", model, ema=ema.state_dict())
    with_ema, raw = load_model(tmp_path / "ck"), load_model(tmp_path / "ck", use_ema=False)
    assert _same_weights(raw, model)
    name = next(iter(dict(model.named_parameters())))
    assert not torch.equal(with_ema.state_dict()[name], model.state_dict()[name])
    assert torch.equal(with_ema.state_dict()[name], ema.state_dict()[name])


def test_run_folder_resolves_to_best_then_last(tmp_path):
    model = _tiny()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", model, step=10)
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "last"
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", model, step=5)
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "best"
    assert load_checkpoint(tmp_path / "run").step == 5


def test_other_architecture_fails_naming_the_difference(tmp_path):
    save_checkpoint(tmp_path / "ck", _tiny())
    with pytest.raises(CheckpointError) as info:
        load_weights_into(interir.create_model("nafnet-small"), tmp_path / "ck")
    msg = str(info.value)
    assert "'interir-tiny'" in msg and "'nafnet-small'" in msg
    assert "missing keys" in msg and "unexpected keys" in msg
    # same family, other width: the config difference and the shapes are named
    with pytest.raises(CheckpointError) as info:
        load_weights_into(interir.create_model("interir-tiny", width=16, stages=2), tmp_path / "ck")
    msg = str(info.value)
    assert "width: checkpoint 8 vs model 16" in msg
    assert "shape mismatches" in msg


def test_corrupt_files_fail_with_a_message_naming_them(tmp_path):
    path = save_checkpoint(tmp_path / "ck", _tiny())
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(path)
    weights.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(path)
    save_checkpoint(tmp_path / "ck2", _tiny())
    (tmp_path / "ck2" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "ck2")


def test_pickles_are_never_loaded(tmp_path):
    pt = tmp_path / "model.pt"
    torch.save(_tiny().state_dict(), pt)
    with pytest.raises(CheckpointError, match="never pickled"):
        load_model(pt)
    # A training state holding an arbitrary Python object is refused (weights_only=True).
    model = _tiny()
    path = save_checkpoint(tmp_path / "ck", model, optimizer=torch.optim.Adam(model.parameters()), step=1)
    assert load_training_state(path)["step"] == 1
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "evil": types.SimpleNamespace(a=1)}, path / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_training_state(path)


def test_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _tiny()
    opt = torch.optim.Adam(model.parameters())
    target = tmp_path / "last"
    save_checkpoint(target, model, optimizer=opt, step=1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, model, optimizer=opt, step=2)
    monkeypatch.undo()
    assert load_training_state(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folders left


def test_interrupted_swap_is_recovered(tmp_path):
    model = _tiny()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last", model, step=3)
    # simulate a crash between "rename last -> .last.old-x" and "rename tmp -> last"
    (tmp_path / "run" / "checkpoints" / "last").rename(tmp_path / "run" / "checkpoints" / ".last.old-1234")
    assert load_checkpoint(tmp_path / "run").step == 3


def test_model_names_and_default():
    with pytest.warns(UserWarning, match="random"):
        m = load_model("interir-tiny")
    assert m.model_name == "interir-tiny" and not m.training
    with pytest.raises(FileNotFoundError, match="Did you mean 'interir-tiny'"):
        load_model("interir-tinyy")
    default = load_model("default")
    assert default.pretrained_name == "default" and default.model_name == "interir-base"
    assert not default.training
    shipped = load_model("eb-nafnet-small")  # every shipped name, not only "default"
    assert shipped.pretrained_name == "eb-nafnet-small" and shipped.model_name == "nafnet-small"


def test_allow_missing_keeps_new_parameters_and_still_checks_the_rest(tmp_path):
    trained = _tiny()
    save_checkpoint(tmp_path / "ck", trained)
    grown = _tiny(airlight_stats=True)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights_into(grown, tmp_path / "ck")
    left = load_weights_into(grown, tmp_path / "ck", allow_missing=True)
    assert left == ["global_stats.proj.bias", "global_stats.proj.weight"]
    assert float(grown.global_stats.proj.weight.detach().abs().sum()) == 0.0  # left at its zero init
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(grown.eval()(x), trained.eval()(x))
    # the other way round (the checkpoint has keys the model lacks) is still an error
    save_checkpoint(tmp_path / "grown", grown)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_weights_into(_tiny(), tmp_path / "grown", allow_missing=True)
