"""Tests for `interir synth` and reading its output back (load_synthetic_suite)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import typer

from interir.cli.synth import synth_command
from interir.data import (
    PairedImageDataset,
    SyntheticPairDataset,
    load_synthetic_suite,
    synthesize_suite,
)
from interir.degradations import COMBINATIONS, DegradationParams, DegradationPipeline
from interir.utils.io import read_image

DATA = Path(__file__).parent / "data"
runner = CliRunner()

# A private group holding only `synth`, so the tests do not depend on the other commands.
app = typer.Typer()
app.command("synth")(synth_command)


@app.callback()
def _group() -> None:
    """test group"""


@pytest.fixture()
def clean_dir(tmp_path):
    d = tmp_path / "clean"
    d.mkdir()
    for name in ("chelsea.png", "camera.png"):
        img = Image.open(DATA / name)
        img.resize((img.width // 4, img.height // 4)).save(d / name)
    Image.open(DATA / "coffee.png").resize((60, 40)).save(d / "coffee.jpg", quality=90)
    return d


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_cli_writes_layout_and_is_byte_identical(clean_dir, tmp_path):
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    r1 = runner.invoke(app, ["synth", str(clean_dir), str(out1), "--seed", "7"])
    assert r1.exit_code == 0, r1.output
    assert "wrote 21 pairs (3 images x 7 combinations)" in r1.output
    # second run through the installed console script (interir.cli:main)
    exe = Path(sys.executable).with_name("interir")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                           "from interir.cli import main; main()"]
    r2 = subprocess.run(cmd + ["synth", str(clean_dir), str(out2), "--seed", "7", "-q"],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    f1, f2 = _files(out1), _files(out2)
    assert len(f1) == 7 * 3 * 2 + 2
    assert f1 == f2  # byte-identical, manifests included
    for c in COMBINATIONS:
        for stem in ("camera", "chelsea", "coffee"):
            for kind in ("input", "target"):
                p = out1 / c / kind / f"{stem}.png"
                img = Image.open(p)
                assert img.mode == "RGB" and img.format == "PNG"
        assert not torch.equal(read_image(out1 / c / "input" / "chelsea.png").image,
                               read_image(out1 / c / "target" / "chelsea.png").image)
    # a different seed changes the inputs but not the targets
    out3 = tmp_path / "o3"
    r3 = runner.invoke(app, ["synth", str(clean_dir), str(out3), "--seed", "8", "-q"])
    assert r3.exit_code == 0
    f3 = _files(out3)
    assert f3["haze/target/camera.png"] == f1["haze/target/camera.png"]
    assert f3["haze/input/camera.png"] != f1["haze/input/camera.png"]


def test_manifest_contents(clean_dir, tmp_path):
    out = tmp_path / "o"
    m = synthesize_suite(clean_dir, out, seed=11)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert m["seed"] == 11 and m["version"] == 1 and m["combinations"] == list(COMBINATIONS)
    assert m["level_ranges"] == {"haze": [0.0, 150.0], "rain": [0.0, 300.0], "noise": [0.0, 50.0]}
    assert len(m["images"]) == 21 and len(m["sources"]) == 3
    for r in m["images"]:
        parts = r["combination"].split("+")
        for d, mx in (("haze", 150), ("rain", 300), ("noise", 50)):
            if d in parts:
                assert 0 < r[f"{d}_level"] <= mx
            else:
                assert r[f"{d}_level"] == 0.0
        assert (r["rain_angle"] is None) == ("rain" not in parts)
        assert (out / r["input"]).is_file() and (out / r["target"]).is_file()
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 21 and rows[0]["combination"] == "haze"
    assert float(rows[0]["haze_level"]) == m["images"][0]["haze_level"]
    assert rows[0]["rain_angle"] == ""


def test_manifest_parameters_reproduce_the_inputs(clean_dir, tmp_path):
    out = tmp_path / "o"
    synthesize_suite(clean_dir, out, seed=3, combinations="haze+rain+noise")
    suite = load_synthetic_suite(out)
    params = suite.degradation_params("haze+rain+noise")
    ds = suite.datasets["haze+rain+noise"]
    pipe = DegradationPipeline()
    for i in range(len(ds)):
        item = ds[i]
        y = pipe.apply(item["target"][None], params.select([i]))[0]
        assert torch.equal(torch.floor(y.double() * 255 + 0.5).float() / 255, item["input"])


def test_seeding_is_per_combination_and_image(clean_dir, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    synthesize_suite(clean_dir, full, seed=5)
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(clean_dir / "coffee.jpg", sub / "coffee.jpg")
    synthesize_suite(sub, part, seed=5, combinations="rain+noise,haze")
    for c in ("rain+noise", "haze"):
        assert (part / c / "input" / "coffee.png").read_bytes() == (
            full / c / "input" / "coffee.png").read_bytes()
    # the on-the-fly dataset gives the same pixels as the written files
    item = SyntheticPairDataset(clean_dir, "rain", seed=5)[0]
    assert item["name"] == "camera"
    assert torch.equal(item["input"], read_image(full / "rain" / "input" / "camera.png").image)


def test_fixed_levels_and_subset(clean_dir, tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["synth", str(clean_dir), str(out), "--seed", "1", "--combinations",
                            "noise,haze+rain", "--levels", "haze=100,rain=200,noise=25", "-q"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["combinations"] == ["noise", "haze+rain"]
    assert m["fixed_levels"] == {"haze": 100.0, "rain": 200.0, "noise": 25.0}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["haze+rain", "noise"]
    for rec in m["images"]:
        if rec["combination"] == "noise":
            assert (rec["haze_level"], rec["rain_level"], rec["noise_level"]) == (0, 0, 25)
        else:
            assert (rec["haze_level"], rec["rain_level"], rec["noise_level"]) == (100, 200, 0)
    # noise at level 25 has std ~ 25/255 on the gray camera image (away from clipping)
    x = read_image(out / "noise" / "input" / "camera.png").image
    y = read_image(out / "noise" / "target" / "camera.png").image
    keep = (y > 0.2) & (y < 0.8)
    assert abs(float((x - y)[keep].std()) - 25 / 255) < 0.01


def test_cli_bad_arguments(clean_dir, tmp_path):
    r = runner.invoke(app, ["synth", str(clean_dir), str(tmp_path / "o"), "--seed", "1",
                            "--combinations", "fog"])
    assert r.exit_code != 0 and "invalid combination" in r.output
    r = runner.invoke(app, ["synth", str(clean_dir), str(tmp_path / "o"), "--seed", "1",
                            "--levels", "haze"])
    assert r.exit_code != 0 and "NAME=VALUE" in r.output
    r = runner.invoke(app, ["synth", str(tmp_path / "nope"), str(tmp_path / "o"), "--seed", "1"])
    assert r.exit_code != 0 and "does not exist" in r.output


def test_progress_output(clean_dir, tmp_path):
    r = runner.invoke(app, ["synth", str(clean_dir), str(tmp_path / "o"), "--seed", "1",
                            "--combinations", "noise"])
    assert r.exit_code == 0
    assert "[3/3 pairs]" in r.output  # the final progress line is always printed
    q = runner.invoke(app, ["synth", str(clean_dir), str(tmp_path / "q"), "--seed", "1",
                            "--combinations", "noise", "-q"])
    assert q.exit_code == 0 and "pairs]" not in q.output


def test_single_files_and_folders_mixed_with_the_printed_default_seed(clean_dir, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.open(DATA / "coffee.png").resize((30, 20)).save(extra / "mug.png")
    one = runner.invoke(app, ["synth", str(extra / "mug.png"), str(tmp_path / "one"),
                              "--combinations", "haze,noise", "-q"])
    assert one.exit_code == 0, one.output
    printed = int(re.search(r"^seed (\d+) \(the default", one.output, re.M).group(1))
    m = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert m["seed"] == printed == 2025 and [s["name"] for s in m["sources"]] == ["mug"]
    assert sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*.png")) \
        == ["haze/input/mug.png", "haze/target/mug.png", "noise/input/mug.png",
            "noise/target/mug.png"]
    # the pair equals the one the whole folder gives with the same seed
    synthesize_suite(extra, tmp_path / "folder", seed=2025, combinations="haze,noise")
    assert _files(tmp_path / "folder" / "haze") == _files(tmp_path / "one" / "haze")
    mixed = runner.invoke(app, ["synth", str(clean_dir), str(extra / "mug.png"),
                                str(clean_dir / "camera.png"), str(tmp_path / "mixed"),
                                "--seed", "5", "--combinations", "rain", "-q"])
    assert mixed.exit_code == 0, mixed.output  # camera.png named twice counts once
    assert "seed 5\n" in mixed.output and "wrote 4 pairs" in mixed.output
    m = json.loads((tmp_path / "mixed" / "manifest.json").read_text())
    assert m["seed"] == 5 and sorted(s["name"] for s in m["sources"]) == [
        "camera", "chelsea", "coffee", "mug"]


def test_single_file_errors_are_clear(clean_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    r = runner.invoke(app, ["synth", str(tmp_path / "notes.txt"), str(tmp_path / "o")])
    assert r.exit_code == 2 and "not an image file" in r.output
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(clean_dir / "camera.png", other / "camera.png")
    r = runner.invoke(app, ["synth", str(clean_dir), str(other / "camera.png"),
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "unique names" in r.output


def test_load_synthetic_suite(clean_dir, tmp_path):
    out = tmp_path / "o"
    synthesize_suite(clean_dir, out, seed=2, combinations="haze,rain")
    suite = load_synthetic_suite(out)
    assert suite.seed == 2 and suite.combinations == ["haze", "rain"]
    assert set(suite.datasets) == {"haze", "rain"}
    ds = suite.datasets["rain"]
    assert isinstance(ds, PairedImageDataset) and ds.names == ["camera", "chelsea", "coffee"]
    assert suite.params("rain", "coffee")["rain_level"] > 0
    assert len(suite.records("haze")) == 3
    assert isinstance(suite.degradation_params("haze"), DegradationParams)
    only = load_synthetic_suite(out, combinations="rain")
    assert list(only.datasets) == ["rain"]
    # a missing file is detected
    (out / "rain" / "input" / "coffee.png").unlink()
    with pytest.raises(ValueError, match="coffee"):
        load_synthetic_suite(out)
    with pytest.raises(FileNotFoundError, match="interir synth"):
        load_synthetic_suite(tmp_path)


def test_grayscale_and_16bit_sources(tmp_path):
    import png

    d = tmp_path / "c"
    d.mkdir()
    a16 = np.random.default_rng(0).integers(0, 65536, size=(20, 24, 3), dtype=np.uint16)
    png.from_array(a16.reshape(20, -1), "RGB;16").save(str(d / "deep.png"))
    Image.fromarray(np.full((20, 24), 128, np.uint8), "L").save(d / "gray.png")
    m = synthesize_suite(d, tmp_path / "o", seed=0, combinations="haze")
    src = {s["name"]: s for s in m["sources"]}
    assert src["deep"]["bit_depth"] == 16 and src["gray"]["was_grayscale"]
    t = Image.open(tmp_path / "o" / "haze" / "target" / "deep.png")
    assert t.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(t), np.floor(a16 / 65535 * 255 + 0.5).astype(np.uint8))
