"""Hostile and careless inputs (issue 17): nothing lost, nothing unbounded, every error names the
file and the fix. docs/reliability.md lists each case with the test below that keeps it true."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import interir
from interir.data import synthesize_suite
from interir.engine import checkpoint as ckpt
from interir.engine.checkpoint import (
    CheckpointError,
    load_training_state,
    save_checkpoint,
)
from interir.engine.evaluate import evaluate, open_dataset
from interir.engine.train import train
from interir.inference import restore_paths
from interir.loading import load_model
from interir.utils import io as image_io
from interir.utils.files import default_mode
from interir.utils.io import ImageReadError, pixel_limit, read_image, write_image

from helpers import Half, run_cli, tiny_train_config

DATA = Path(__file__).parent / "data"


_cli = run_cli


def _u8(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def _tiff16(path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")  # the io16 extra
    rng = np.random.default_rng(1)
    tifffile.imwrite(path, rng.integers(0, 65536, size=(12, 14, 3), dtype=np.uint16),
                     photometric="rgb")


@pytest.fixture()
def unwritable(tmp_path):
    """A folder this process cannot create files in: read-only permissions, or for root (whom
    permissions do not stop) a path under /sys, which refuses new entries."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without /sys: no folder that refuses writes")
    yield Path("/sys/interir-test-unwritable")


# ------------------------------------------------------------------------------ 1-3 data loss


def test_forced_png_cannot_collide_with_another_output_or_replace_an_original(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    _tiff16(folder / "scan.tif")  # 16-bit: must become scan.png
    Image.fromarray(_u8(10, 11)).save(folder / "scan.png")
    original = (folder / "scan.png").read_bytes()

    out = tmp_path / "out"
    report = restore_paths([folder], out, Half(), overwrite=True)
    assert [(s.name, d.name) for s, d in report.written] == [("scan.png", "scan.png")]
    assert [s.name for s, _ in report.failed] == ["scan.tif"]
    assert "would also be written from" in report.failed[0][1]
    assert read_image(out / "scan.png").size == (10, 11)  # not overwritten by the TIFF

    report = restore_paths([folder], folder, Half(), overwrite=True)
    assert not report.written and len(report.failed) == 2
    assert all("would replace the input file" in reason for _, reason in report.failed)
    assert (folder / "scan.png").read_bytes() == original


def test_restoring_onto_the_inputs_is_refused_even_with_overwrite(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_u8(9, 12)).save(photos / "a.png")
    Image.fromarray(_u8(9, 12, seed=1)).save(photos / "b.jpg", quality=95)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    result = _cli("restore", photos, "-o", photos, "--overwrite", "-m", "interir-tiny")
    assert result.exit_code == 1
    assert result.output.count("never replaced") == 2 and "0 written, 2 failed" in result.output
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_synth_refuses_a_folder_of_other_files_and_replaces_only_a_suite(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(_u8(16, 16)).save(clean / "a.png")
    mine = tmp_path / "haze" / "haze" / "input" / "a.png"  # a user's file where synth writes
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"precious")
    result = _cli("synth", clean, tmp_path / "haze", "--seed", "1", "--combinations", "haze", "-q")
    assert result.exit_code == 2 and "not empty and holds no interir synth suite" in result.output
    assert mine.read_bytes() == b"precious"

    suite = tmp_path / "suite"
    synthesize_suite(clean, suite, seed=7, combinations="haze,noise")
    with pytest.raises(FileExistsError, match="--overwrite"):
        synthesize_suite(clean, suite, seed=8, combinations="haze")
    synthesize_suite(clean, suite, seed=8, combinations="haze", overwrite=True)
    assert sorted(p.name for p in suite.iterdir()) == ["haze", "manifest.csv", "manifest.json"]

    (suite / "notes.txt").write_text("mine")  # a suite with a user's file in it
    with pytest.raises(FileExistsError, match="notes.txt"):
        synthesize_suite(clean, suite, seed=9, combinations="haze", overwrite=True)
    assert (suite / "notes.txt").read_text() == "mine" and (suite / "haze").is_dir()

    # A manifest never makes synth delete files outside its folder.
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep")
    (suite / "notes.txt").unlink()
    manifest = json.loads((suite / "manifest.json").read_text())
    manifest["images"][0]["input"] = "../victim.png"
    (suite / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match="not part of its suite"):
        synthesize_suite(clean, suite, seed=9, combinations="haze", overwrite=True)
    assert victim.read_bytes() == b"keep"


def test_an_interrupted_synth_is_still_a_suite(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("a", "b"):
        Image.fromarray(_u8(16, 16)).save(clean / f"{name}.png")
    calls = []

    def dies_on_the_third_file(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return write_image(path, *args, **kwargs)

    monkeypatch.setattr("interir.data.synthetic.write_image", dies_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        synthesize_suite(clean, tmp_path / "s", seed=1, combinations="haze")
    monkeypatch.undo()
    manifest = synthesize_suite(clean, tmp_path / "s", seed=1, combinations="haze", overwrite=True)
    assert len(manifest["images"]) == 2
    assert not (tmp_path / "s" / ".interir-synth-partial.json").exists()


# --------------------------------------------------------------------- 4-5 silent wrong results


def test_eval_reads_the_combinations_the_manifest_lists(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(_u8(16, 16)).save(clean / "a.png")
    synthesize_suite(clean, tmp_path / "old", seed=7, combinations="haze,noise")
    synthesize_suite(clean, tmp_path / "new", seed=8, combinations="haze")
    shutil.copytree(tmp_path / "old" / "noise", tmp_path / "new" / "noise")  # stale folder
    report = evaluate({"identity": torch.nn.Identity()}, [tmp_path / "new"])
    assert report.table.columns == ["haze"]
    assert {r.combination for r in report.results} == {"haze"}

    shutil.rmtree(tmp_path / "new" / "haze")
    with pytest.raises(ValueError, match="lists combination.*haze.*--overwrite"):
        open_dataset(tmp_path / "new")


def test_explain_checks_the_target_size_before_cropping(tmp_path):
    Image.fromarray(_u8(40, 48)).save(tmp_path / "hazy.png")
    Image.fromarray(_u8(48, 40)).save(tmp_path / "clean.png")
    result = _cli("explain", tmp_path / "hazy.png", "--target", tmp_path / "clean.png",
                  "--crop", "16", "-m", "interir-tiny", "-o", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2
    assert "--target" in result.output and "40x48" in result.output and "48x40" in result.output
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- 6-7 unbounded memory


def test_hostile_checkpoint_header_is_refused_before_allocating(tmp_path, monkeypatch):
    from interir import registry

    path = tmp_path / "that.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, str(path), metadata={
        "format": "interir-checkpoint", "model_name": "interir-tiny",
        "config": json.dumps({"width": 4096, "stages": 8}),  # ~67 G parameters
    })
    assert path.stat().st_size < 400
    real = registry.create_model

    def create_only_on_meta(name, **config):
        # torch.empty follows the default-device context that building "on meta" sets.
        if config.get("width") == 4096 and torch.empty(0).device.type != "meta":
            raise AssertionError("a 4096-wide network was allocated for real")
        return real(name, **config)

    monkeypatch.setattr(registry, "create_model", create_only_on_meta)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "inconsistent" in message and "Fix:" in message


def test_inconsistent_checkpoint_says_so(tmp_path):
    model = interir.create_model("interir-tiny", width=8, stages=2)
    folder = save_checkpoint(tmp_path / "ck", model)
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["width"] = 16  # the description no longer fits the weights
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert "is inconsistent" in message and "width=16" in message and "shape mismatches" in message
    assert "'interir-tiny' vs" not in message


def _png_header(path: Path, width: int, height: int) -> None:
    """A valid-looking 8-bit grayscale PNG that declares ``width x height`` but holds one row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    _png_header(tmp_path / "bomb.png", 12000, 12000)
    monkeypatch.setattr(image_io, "available_memory_bytes", lambda: 2**30, raising=False)  # 1 GiB
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "bomb.png")
    message = str(info.value)
    assert "12000 x 12000" in message and "1.0 GiB of available memory" in message
    assert "--max-pixels 144000000" in message and "bomb.png" in message

    Image.fromarray(_u8(20, 30)).save(tmp_path / "small.png")
    with pixel_limit(599), pytest.raises(ImageReadError, match="set with --max-pixels"):
        read_image(tmp_path / "small.png")
    with pixel_limit(600):
        assert read_image(tmp_path / "small.png").size == (20, 30)
    result = _cli("restore", tmp_path / "small.png", "-o", tmp_path / "out", "-m", "interir-tiny",
                  "--max-pixels", "599")
    assert result.exit_code == 1 and "more than the limit of 599 pixels" in result.output
    assert not (tmp_path / "out" / "small.png").exists()


# ------------------------------------------------------------ 8-12 runs resumed and reused


_cfg = tiny_train_config


def test_a_run_that_failed_at_start_up_can_be_started_again(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_cfg(tmp_path, "r", f"data.train_roots=[{tmp_path / 'missing'}]"))
    with pytest.raises(FileNotFoundError):
        train(_cfg(tmp_path, "r", f"train.init_from={tmp_path / 'missing.safetensors'}"))
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint"):
        train(_cfg(tmp_path, "r"), resume=True)
    result = train(_cfg(tmp_path, "r", "train.iterations=2"))  # no --overwrite needed
    assert result.step == 2
    assert len(json.loads((result.run_dir / "run.json").read_text())["sessions"]) == 1


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    run = train(_cfg(tmp_path, "t"), max_steps=2).run_dir
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "train", "st')  # killed mid-write
    with open(run / "metrics.csv", "a") as fh:
        fh.write("train,4,0.0")
    result = train(_cfg(tmp_path, "t"), resume=True)
    assert result.step == 4
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert (run / "metrics.csv").read_text().count("train,") == 2
    assert "dropping its last line" in (run / "train.log").read_text()

    # A damaged row in the middle is not guessed at: the error names the file, the line and the fix,
    # and the failed attempt adds no session to run.json.
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0][:-3] + "\n" + lines[1] + "\n")
    sessions = len(json.loads((run / "run.json").read_text())["sessions"])
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: .*Fix: delete that line"):
        train(_cfg(tmp_path, "t", "train.iterations=6"), resume=True)
    assert len(json.loads((run / "run.json").read_text())["sessions"]) == sessions


def test_interrupted_checkpoint_writes_are_cleaned_on_the_next_start(tmp_path):
    run = train(_cfg(tmp_path, "k"), max_steps=2).run_dir
    checkpoints = run / "checkpoints"
    for leftover in (".last.tmp-dead1", ".last.old-dead2", ".best.tmp-dead3"):
        shutil.copytree(checkpoints / "last", checkpoints / leftover)
    result = train(_cfg(tmp_path, "k"), resume=True)
    assert result.step == 4 and sorted(p.name for p in checkpoints.iterdir()) == ["last"]

    # Killed between the two renames: 'last' is missing and comes back from its old copy.
    (checkpoints / "last").rename(checkpoints / ".last.old-0001")
    shutil.copytree(checkpoints / ".last.old-0001", checkpoints / ".last.tmp-0002")
    assert ckpt.clean_interrupted_writes(checkpoints / "last")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]
    assert load_training_state(checkpoints / "last")["step"] == 4


def test_checkpoint_folders_get_the_permissions_of_a_plain_folder(tmp_path):
    old = os.umask(0o022)
    try:
        model = interir.create_model("interir-tiny", width=8, stages=1)
        folder = save_checkpoint(tmp_path / "ck", model)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())
    assert default_mode(directory=True) == 0o777 & ~old


def test_the_resume_hint_is_a_command_that_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(json.dumps({
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 1}},
        "data": {"train_roots": [str(DATA)], "patch_size": 32, "val": {"kind": "none"}},
        "train": {"iterations": 4, "batch_size": 2, "threads": 1, "ema_decay": None,
                  "log_every": 2, "val_every": 0, "ckpt_every": 0, "device": "cpu"},
        "output": {"dir": "runs", "name": "cfg", "tensorboard": "off"},
    }))
    result = _cli("train", "cfg.yaml", "output.name=mine", "train.iterations=6", "--max-steps", "2")
    assert result.exit_code == 0, result.output
    hint = result.output.rsplit("continue with: ", 1)[1].strip()  # the CLI's line, printed last
    assert hint == f"interir train {Path('runs') / 'mine'} --resume"
    args = shlex.split(hint)[1:]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "mine" / "summary.json").read_text())
    assert summary["step"] == 6 and summary["reason"] == "completed"  # overrides kept
    assert not (tmp_path / "runs" / "cfg").exists()


# --------------------------------------------------------------------------- unclear messages


def test_unwritable_output_folder_fails_before_any_work(tmp_path, unwritable):
    Image.fromarray(_u8(9, 12)).save(tmp_path / "a.png")
    result = _cli("restore", tmp_path / "a.png", "-o", unwritable / "out", "-m", "interir-tiny")
    assert result.exit_code == 2
    assert "cannot write to output folder" in result.output and "Fix:" in result.output
    assert "written" not in result.output
    result = _cli("eval", tmp_path, "-m", "classical-nlm", "--out", unwritable / "eval")
    assert result.exit_code == 2 and "cannot write to --out folder" in result.output


def test_output_naming_an_existing_file_is_refused_up_front(tmp_path):
    Image.fromarray(_u8(9, 12)).save(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    result = _cli("restore", tmp_path / "a.png", "-o", tmp_path / "taken", "-m", "interir-tiny")
    assert result.exit_code == 2
    assert "cannot be a folder" in result.output and "taken" in result.output
    assert (tmp_path / "taken").read_text() == "a file"


def test_unwritable_output_format_is_refused_with_the_fix(tmp_path):
    Image.fromarray(_u8(9, 12)).save(tmp_path / "anim.gif")
    Image.fromarray(_u8(9, 12)).save(tmp_path / "scan", format="PNG")
    result = _cli("restore", tmp_path / "anim.gif", tmp_path / "scan", "-o", tmp_path / "out",
                  "-m", "interir-tiny")
    assert result.exit_code == 1 and result.output.count("pass --format png") == 2
    assert "'.gif' output" in result.output and "extension-less output" in result.output
    result = _cli("restore", tmp_path / "anim.gif", tmp_path / "scan", "-o", tmp_path / "out",
                  "-m", "interir-tiny", "--format", "png")
    assert result.exit_code == 0 and "2 written" in result.output


def test_corrupt_registry_json_names_the_file(tmp_path, monkeypatch):
    import interir.pretrained as pretrained

    broken = tmp_path / "registry.json"
    broken.write_text('{"default": ')
    monkeypatch.setattr(pretrained, "REGISTRY_FILE", broken)
    with pytest.raises(pretrained.PretrainedError) as info:
        load_model("default")
    assert str(broken) in str(info.value) and "reinstall interir" in str(info.value)


def test_export_to_an_unwritable_path_names_it(tmp_path, unwritable):
    result = _cli("export", "-m", "interir-tiny", "-f", "torchscript", "--no-check",
                  "-o", unwritable / "x.pt")
    assert result.exit_code == 1
    assert "cannot write to folder of the --output file" in result.output
    assert "inline_container" not in result.output
    result = _cli("export", "-m", "interir-tiny", "-f", "torchscript", "-o", tmp_path)
    assert result.exit_code == 1 and "is a folder" in result.output


def test_pickled_training_state_is_refused_without_torch_advice(tmp_path):
    model = interir.create_model("interir-tiny", width=8, stages=1)
    folder = save_checkpoint(tmp_path / "ck", model, optimizer=torch.optim.Adam(model.parameters()),
                             step=1)
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "x": types.SimpleNamespace(a=1)},
               folder / ckpt.STATE_FILE)
    with pytest.raises(CheckpointError) as info:
        load_training_state(folder)
    message = str(info.value)
    assert "refuses to unpickle" in message and str(folder / ckpt.STATE_FILE) in message
    assert "weights_only" not in message and "Fix:" in message
    (folder / ckpt.STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_training_state(folder)


# ------------------------------------------------------------------------------------ profiling


def test_memory_measurement_never_unpickles(tmp_path):
    from interir.profiling import _memory_worker, measure_peak_memory

    pickled = tmp_path / "model.pt"
    torch.save(torch.nn.Conv2d(3, 3, 1), pickled)
    with pytest.raises(CheckpointError, match="never pickled"):
        _memory_worker({"model_path": str(pickled), "shape": [1, 3, 8, 8], "threads": 1})
    with pytest.raises(ValueError, match="interir.create_model"):
        measure_peak_memory(torch.nn.Conv2d(3, 3, 1), (1, 3, 8, 8))
