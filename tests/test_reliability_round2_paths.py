"""Hostile and careless inputs, round 2 (issue 27): paths and writes. Nothing a user has is
replaced or changed without being asked, no file makes interir read or write outside its folder,
and an interrupted write leaves nothing behind for long. docs/reliability.md ("Round 2 (issue 27):
paths and writes") lists each case with the test below that keeps it true."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interir
from interir.config import ConfigError, load_config
from interir.data import synthesize_suite
from interir.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from interir.engine.evaluate import EvalOptions, evaluate
from interir.engine.train import train
from interir.inference import restore_paths

from helpers import Half, run_cli, tiny_train_config

DATA = Path(__file__).parent / "data"


_cli = run_cli


def _png(path: Path, seed: int = 0, size: tuple[int, int] = (9, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


_cfg = tiny_train_config


# ------------------------------------------------------------------- 1-5 data lost or changed


def test_export_never_replaces_its_input_and_asks_before_replacing_a_file(tmp_path):
    model = interir.create_model("interir-tiny", width=8, stages=1)
    weights = save_checkpoint(tmp_path / "ex" / "model.safetensors", model)
    original = weights.read_bytes()
    for target in (weights, weights.with_suffix(".json")):
        result = _cli("export", "-m", weights, "-f", "torchscript", "--no-check", "-o", target,
                      "--overwrite")
        assert result.exit_code == 1, result.output
        assert "never replaces its input" in result.output
    assert weights.read_bytes() == original

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    result = _cli("export", "-m", weights, "-f", "torchscript", "--no-check", "-o", notes)
    assert result.exit_code == 1 and "already exists" in result.output
    assert "--overwrite" in result.output and notes.read_text() == "mine"
    result = _cli("export", "-m", weights, "-f", "torchscript", "--no-check", "-o", notes,
                  "--overwrite")
    assert result.exit_code == 0, result.output
    assert torch.jit.load(str(notes))(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_resuming_a_copied_run_folder_trains_the_copy(tmp_path):
    base = train(_cfg(tmp_path, "base"), max_steps=2).run_dir
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(base, copy)
    base_state = (base / "checkpoints" / "last" / "model.safetensors").read_bytes()
    result = _cli("train", copy, "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "summary.json").read_text())["step"] == 4
    assert json.loads((base / "summary.json").read_text())["step"] == 2
    assert (base / "checkpoints" / "last" / "model.safetensors").read_bytes() == base_state
    assert "it was copied or moved" in (copy / "train.log").read_text()
    saved = load_config(copy / "config.yaml")
    assert Path(saved.output.dir) / saved.output.name == copy


def test_a_run_folder_in_use_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")  # POSIX; Windows has no advisory locks
    run = tmp_path / "runs" / "twin"
    run.mkdir(parents=True)
    with open(run / ".interir-train.lock", "a") as other:  # what a running `interir train` holds
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FileExistsError, match="in use by another interir train"):
            train(_cfg(tmp_path, "twin"))
    assert sorted(p.name for p in run.iterdir()) == [".interir-train.lock"]
    result = train(_cfg(tmp_path, "twin", "train.iterations=2"))  # released: the folder is free
    lines = (run / "metrics.csv").read_text().splitlines()
    assert result.step == 2 and "step" in lines[0] and lines.count(lines[0]) == 1


def test_eval_asks_before_replacing_reports_in_its_out_folder(tmp_path):
    suite = tmp_path / "suite"
    _png(tmp_path / "clean" / "a.png", size=(24, 24))
    synthesize_suite(tmp_path / "clean", suite, combinations="noise", seed=0)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.md").write_text("my notes")
    (out / "per_image.csv").write_text("my,table\n")
    result = _cli("eval", suite, "-m", "classical-nlm", "--device", "cpu", "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert "summary.md" in result.output and "per_image.csv" in result.output
    assert (out / "summary.md").read_text() == "my notes"
    assert (out / "per_image.csv").read_text() == "my,table\n"
    assert not (out / "summary.json").exists()
    result = _cli("eval", suite, "-m", "classical-nlm", "--device", "cpu", "-o", out,
                  "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "summary.md").read_text().startswith("#")


def test_restoring_a_folder_into_itself_twice_skips_the_first_outputs(tmp_path):
    photos = tmp_path / "photos"
    _png(photos / "a.png")
    _png(photos / "sub" / "b.png", seed=1)
    for _ in range(2):
        result = _cli("restore", photos, "-r", "-o", photos / "restored", "-m", "interir-tiny",
                      "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert "FAILED" not in result.output
    assert "outputs are never inputs" in result.output
    assert not (photos / "restored" / "restored").exists()
    assert sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.png")) == [
        "a.png", "restored/a.png", "restored/sub/b.png", "sub/b.png"]


# ----------------------------------------------------- 17, 18, 21: duplicates, folders, leftovers


def test_a_file_given_twice_is_restored_once(tmp_path):
    rgb = _png(tmp_path / "fx" / "rgb.png")
    report = restore_paths([rgb, rgb, tmp_path / "fx"], tmp_path / "o", Half())
    assert report.ok and [(s.name, d.name) for s, d in report.written] == [("rgb.png", "rgb.png")]
    assert sum("restored once" in note for _, note in report.notes) == 2
    result = _cli("restore", rgb, rgb, "-o", tmp_path / "o2", "-m", "interir-tiny",
                  "--device", "cpu")
    assert result.exit_code == 0 and "FAILED" not in result.output
    assert "1 written, 0 failed" in result.output


def test_a_folder_in_the_way_of_an_output_is_refused_before_any_work(tmp_path, monkeypatch):
    rgb = _png(tmp_path / "fx" / "rgb.png")
    other = _png(tmp_path / "fx" / "other.png", seed=1)
    out = tmp_path / "o"
    (out / "rgb.png").mkdir(parents=True)
    (out / "rgb.png" / "keep.txt").write_text("mine")
    restored = []
    monkeypatch.setattr(Half, "forward", lambda self, x: restored.append(x.shape) or x * 0.5)
    report = restore_paths([rgb, other], out, Half(), overwrite=True)
    assert [s.name for s, _ in report.failed] == ["rgb.png"]
    assert "a folder is in the way" in report.failed[0][1] and "Fix:" in report.failed[0][1]
    assert len(restored) == 1 and [d.name for _, d in report.written] == ["other.png"]
    assert (out / "rgb.png" / "keep.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_temporary_files_of_a_killed_write_are_deleted_on_the_next_run(tmp_path):
    rgb = _png(tmp_path / "fx" / "rgb.png")
    out = tmp_path / "o"
    out.mkdir()
    stale = out / ".rgb.png.k3_x9a0q.tmp"  # what atomic_open leaves when killed with -9
    stale.write_bytes(b"half a png")
    stale.chmod(0o600)
    mine = [out / ".rgb.png.tmp", out / "notes.k3_x9a0q.tmp", out / ".other.png.k3_x9a0q.tmp"]
    for path in mine:
        path.write_text("a user's file")
    report = restore_paths([rgb], out, Half())
    assert report.ok and not stale.exists()
    assert (stale, "deleted: the temporary file of an interrupted write") in report.notes
    assert all(path.read_text() == "a user's file" for path in mine)


# ------------------------------------------------------------- 22: paths escaping their folder


def test_a_suite_manifest_cannot_name_combinations_outside_the_suite(tmp_path):
    _png(tmp_path / "clean" / "a.png", size=(24, 24))
    suite = tmp_path / "suite"
    synthesize_suite(tmp_path / "clean", suite, combinations="noise", seed=0)
    # Pairs outside the suite that a hostile manifest points at.
    _png(tmp_path / "input" / "x.png", size=(24, 24))
    _png(tmp_path / "target" / "x.png", seed=1, size=(24, 24))
    manifest = json.loads((suite / "manifest.json").read_text())
    for hostile in ("..", str(tmp_path), "noise/../.."):
        (suite / "manifest.json").write_text(json.dumps(dict(manifest, combinations=[hostile])))
        options = EvalOptions(device="cpu", save_images_to=tmp_path / "out" / "images")
        with pytest.raises(ValueError, match="not a name inside"):
            evaluate(["classical-nlm"], [suite], options)
        assert not (tmp_path / "out").exists()


def test_output_name_must_stay_inside_output_dir(tmp_path):
    for name in ("../../x", "/tmp/x", "a/../../x", ".."):
        with pytest.raises(ConfigError, match="output.name"):
            _cfg(tmp_path, name)
    assert _cfg(tmp_path, "group/run").output.name == "group/run"  # a sub-folder is fine


def test_model_json_cannot_name_weights_outside_its_folder(tmp_path):
    model = interir.create_model("interir-tiny", width=8, stages=1)
    outside = save_checkpoint(tmp_path / "outside.safetensors", model)
    folder = save_checkpoint(tmp_path / "ck", model)
    meta = json.loads((folder / "model.json").read_text())
    for key, value in (("weights", "../outside.safetensors"), ("weights", str(outside)),
                       ("ema_weights", "../outside.safetensors")):
        (folder / "model.json").write_text(json.dumps(dict(meta, **{key: value})))
        with pytest.raises(CheckpointError, match="not a name inside"):
            load_checkpoint(folder)
    (folder / "model.json").write_text(json.dumps(meta))
    assert load_checkpoint(folder).model_name == "interir-tiny"
    assert os.path.exists(outside)
