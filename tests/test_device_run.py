"""The prepared GPU run (scripts/device_run.sh, interir.gpurun): its CPU dry run end to end, and
the parts that decide what comes back (weight files, output limits, budget, config, plan)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interir
from interir.gpurun.cudatests import summarise_junit
from interir.gpurun.options import Budget, parse_options
from interir.gpurun.prepare import (LIMIT_BYTES, TARGET_BYTES, PrepareError, prepare, read_manifest,
                                    repository_files, select_images)
from interir.gpurun.report import copy_tail, out_files
from interir.engine.train import train
from interir.gpurun import training
from interir.gpurun.training import measure_throughput, plan_run, rebase, recipe
from interir.gpurun.run import main as gpurun_main
from interir.gpurun.weights import (MiB, read_weights, split_state, storage_dtype, stored_dtype,
                                    write_weights)
from interir.loading import load_model

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "configs" / "splits" / "bsds432-val.txt"
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"
VAL_NAMES = {ln.strip() for ln in SPLIT.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def _image(path: Path, seed: int, size=(64, 80)) -> None:
    """A smooth random colour field with an edge, saved as 8-bit (JPEG or PNG by suffix)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 4, 5), dtype=np.float32))
    field = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)[0]
    field[:, :, size[1] // 2:] *= 0.6
    pixels = (field.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def _training_folder(root: Path) -> Path:
    """A folder laid out like the shared training images: bsds432/ (the 8 held-out names, three
    more, the Rain100H overlap list) and photos/."""
    names = [ln.strip() for ln in SPLIT.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    (root / "bsds432").mkdir(parents=True)
    (root / "photos").mkdir()
    for i, name in enumerate(names + ["train_1.jpg", "train_2.jpg", "train_3.jpg"]):
        _image(root / "bsds432" / name, i)
    (root / "bsds432" / "overlap_with_Rain100H.txt").write_text("train_3.jpg\n")
    _image(root / "photos" / "Wall.png", 99, size=(96, 72))
    return root


@pytest.mark.slow
def test_cpu_dry_run_trains_scores_and_returns_what_fits(tmp_path):
    source, out, work = _training_folder(tmp_path / "shared-train"), tmp_path / "out", tmp_path / "work"
    (source / "RainTrainL").mkdir()
    (source / "RainTrainL" / "rain-1.png").write_bytes(b"x" * 1000)
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    # As a user would: prepare (without the network: no wheels, 4 MiB counted for them), then run.
    # The payload counts this checkout's real files, so a repository grown past the limit fails here.
    prep = [str(source), "--out", str(tmp_path / "gpu-data"), "--wheels", str(tmp_path / "whl"), "--offline"]
    proc = subprocess.run(["bash", str(REPO / "scripts" / "device_prepare.sh"), *prep], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "a device call sends about" in proc.stdout
    data = tmp_path / "gpu-data" / "train"
    # 2 minutes, not 1: headroom for a busy machine; on an idle one the run takes well under a minute.
    cmd = ["bash", str(REPO / "scripts" / "device_run.sh"), "--device", "cpu", "--minutes", "2",
           "--model", "interir-tiny", "--data", str(data), "--work", str(work), "--max-steps", "6",
           "--set", "train.batch_size=2", "--set", "data.patch_size=32",
           "--tests", str(REPO / "tests" / "test_cuda.py"), str(REPO / "tests" / "test_degradations.py")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    _check_prepared(json.loads((out / "report.json").read_text())["data"], data)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and report["errors"] == [] and report["options"]["install"] == "pip"
    assert {f["name"] for f in report["out"]["files"]} == {
        "report.json", "config.yaml", "metrics.jsonl", "train.log", "weights.safetensors"}
    assert report["out"]["fits_return_limits"] is True and len(report["git"]["commit"]) == 40

    tests = report["tests"]  # no CUDA here: every cuda-marked test is collected and skipped
    assert tests["rc"] == 0 and tests["collected"] >= 6 and tests["skipped"] == tests["collected"]
    rows = report["bench"]["rows"]
    assert [(r["model"], r["size"], r["dtype"]) for r in rows] == [
        ("interir-tiny", 64, "fp32"), ("interir-tiny", 64, "bf16"),
        ("nafnet-small", 64, "fp32"), ("nafnet-small", 64, "bf16")]
    assert all(r["latency_ms"] > 0 and r["peak_mib"] is None and r["gmacs"] > 0 for r in rows)

    _check_training(report, out, data)
    _check_scores_and_weights(report, out)


def _check_prepared(section: dict, data: Path) -> None:
    """The report's ``data``: the prepared folder, within the call's limit, and what was left out."""
    prepared = section["prepared"]
    assert section["root"] == str(data) and prepared["train"] == str(data)
    assert prepared["payload"]["bytes"] <= TARGET_BYTES < LIMIT_BYTES
    assert prepared["payload"]["wheels_bytes"] == 4 * 2**20  # --offline counts the reserve
    carried = prepared["carried"]  # the 8 held-out, train_1, train_2 and the photo; train_3 overlaps
    assert (carried["validation_images"], carried["training_images"], carried["parts"]) == (
        8, 3, {"bsds432": 11, "photos": 1})
    assert [(e["what"], e["files"]) for e in prepared["left_out"]] == [
        ("RainTrainL/", 1), ("images listed in bsds432/overlap_with_Rain100H.txt", 1)]


def _check_training(report: dict, out: Path, data: Path) -> None:
    assert report["throughput"]["images_per_s"] > 0 and report["throughput"]["batch_size"] == 2
    run = report["train"]
    assert run["model"] == "interir-tiny" and run["reason"] == "completed"
    assert 1 <= run["iterations"] <= 6 and run["step"] == run["iterations"]
    assert run["train_seconds"] > 0 and run["patch_size"] == 32 and run["amp"] == "off"
    config = (out / "config.yaml").read_text()
    assert f"{data}/bsds432" in config and "overlap_with_Rain100H.txt" in config
    assert "../shared" not in config
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"][-1] == run["step"]
    assert rows[-1]["kind"] == "val" and rows[-1]["val_images"] == 26


def _check_scores_and_weights(report: dict, out: Path) -> None:
    val = report["validation"]
    # the shipped default's pairs: 14 hazed like CBSD68-MDIR + 12 like real haze
    assert val["pairs"] == 26 and set(val["trained"]["sets"]) == {"0", "1"}
    assert val["compare"]["model"] == "default"
    for scores in (val["trained"], val["compare"]):
        assert math.isfinite(scores["psnr"]) and 5 < scores["psnr"] < 60 and 0 < scores["ssim"] <= 1
    assert report["weights"]["dtype"] == "float32" and report["weights"]["files"] == ["weights.safetensors"]
    returned = load_model(out / "weights.safetensors")
    chosen = load_model(report["weights"]["checkpoint"])
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(returned(x), chosen(x))  # float32: what comes back is what was chosen


def test_large_weights_come_back_in_16_bit_shards_and_join_exactly(tmp_path):
    model = interir.create_model("interir-tiny", width=8, stages=2)
    fp32 = sum(p.numel() for p in model.parameters()) * 4
    paths = write_weights(model, tmp_path / "out", max_file_bytes=fp32 // 3 + 262144 + 1,
                          max_files=4, allowance=int(fp32 * 0.9))
    assert len(paths) >= 2 and all(p.stat().st_size <= fp32 // 3 + 262144 + 1 for p in paths)
    assert {stored_dtype(p) for p in paths} == {"float16"}
    assert gpurun_main(["join", *map(str, paths), "-o", str(tmp_path / "joined.safetensors")]) == 0
    joined = load_model(tmp_path / "joined.safetensors")
    half = {k: v.half().float() for k, v in model.state_dict().items()}
    for key, value in joined.state_dict().items():
        assert torch.equal(value, half[key]), key  # float16 rounding, nothing else
    assert torch.equal(read_weights(paths).state_dict()["down.1.weight"], half["down.1.weight"])
    with pytest.raises(ValueError, match="incomplete"):
        read_weights(paths[:-1])
    with pytest.raises(ValueError, match="even in 16 bits"):
        write_weights(model, tmp_path / "x", 1024 * MiB, 4, allowance=fp32 // 4)


def test_storage_dtype_and_split():
    small = {"a": torch.ones(10), "b": torch.full((10,), 7e4), "n": torch.arange(3)}
    assert storage_dtype(small, 10**6) == torch.float32
    assert storage_dtype({"a": torch.ones(100)}, 300) == torch.float16
    assert storage_dtype({"b": torch.full((100,), 7e4)}, 300) == torch.bfloat16  # beyond float16
    parts = split_state({k: torch.zeros(n) for k, n in [("x", 4), ("y", 4), ("z", 10), ("w", 1)]}, 32)
    assert [list(p) for p in parts] == [["x", "y"], ["z"], ["w"]]


def test_output_limits_and_log_tails(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    (tmp_path / "out").mkdir()
    copy_tail(log, tmp_path / "out" / "t.log", limit=100)
    kept = (tmp_path / "out" / "t.log").read_text().splitlines()
    assert kept[-1] == "line 999" and all(ln.startswith("line ") for ln in kept) and len(kept) < 15
    assert out_files(tmp_path / "out")["fits_return_limits"] is True
    for i in range(8):
        (tmp_path / "out" / f"f{i}").write_bytes(b"x")
    assert out_files(tmp_path / "out")["fits_return_limits"] is False  # 9 files


def test_budget_phases_and_plan():
    budget = Budget(total_s=480, start=0.0)
    budget.elapsed = lambda: 100.0
    assert budget.until(0.25) == 20 and budget.until(0.1, floor=60) == 60
    assert budget.for_training() == 480 - 100 - 48  # reserve: 10 % of the budget
    tp = {"images_per_s": 64.0, "batch_size": 32, "setup_s": 20.0}
    plan = plan_run(tp, 320.0, None)
    steps = int(300 * 0.85 * 2)  # (320 s - 20 s of setup) x 85 % x 2 steps/s
    assert plan == {"iterations": steps, "ckpt_every": 120, "val_every": steps // 4}
    assert plan_run(tp, 320.0, 5) == {"iterations": 5, "ckpt_every": 0, "val_every": 0}


def test_recipe_rebases_shared_paths_and_keeps_the_default_validation(tmp_path):
    assert rebase("../shared/data/train/bsds432", tmp_path) == f"{tmp_path}/bsds432"
    assert rebase("configs/splits/bsds432-val.txt", tmp_path) == "configs/splits/bsds432-val.txt"
    opts = parse_options(["--device", "cpu", "--data", str(tmp_path), "--model", "interir-small"])
    assert opts.bench_models == ["interir-small", "nafnet-small"] and opts.bench_sizes == [64]
    base = recipe(opts, tmp_path / "work")
    assert base["model"] == {"name": "interir-small", "overrides": {}}
    assert base["data"]["train_roots"] == [f"{tmp_path}/bsds432", f"{tmp_path}/photos"]
    assert base["train"]["batch_size"] == 32 and base["data"]["patch_size"] == 256  # the paper's
    assert [v["limit"] for v in base["data"]["val"]] == [14, 12]
    assert all(v["roots"] == [f"{tmp_path}/bsds432"] for v in base["data"]["val"])


def test_junit_summary_counts_outcomes(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="t" name="a" time="0.5"/>'
        '<testcase classname="t" name="b" time="1"><failure message="boom">trace</failure></testcase>'
        '<testcase classname="t" name="c" time="0"><skipped message="no CUDA"/></testcase>'
        '<testcase classname="t" name="d" time="0"><error message="fixture"/></testcase>'
        '<testcase classname="" name="tests.test_app" time="0"><error message="collection failure"/>'
        '</testcase></testsuite></testsuites>')
    s = summarise_junit(xml)
    assert (s["collected"], s["passed"], s["failed"], s["skipped"], s["errors"]) == (4, 1, 1, 1, 1)
    assert s["collection_errors"] == 1  # a module that could not be imported is not a CUDA test
    assert [f["name"] for f in s["failures"]] == ["t::b", "t::d", "::tests.test_app"]
    assert "boom" in s["failures"][0]["message"]


def test_throughput_steps_retry_with_stage_checkpointing_after_out_of_memory(tmp_path, monkeypatch):
    data = _training_folder(tmp_path / "train")
    argv = ["--device", "cpu", "--data", str(data), "--model", "interir-tiny", "--set", "train.batch_size=2",
            "--set", "data.patch_size=32", "--set", "train.threads=1"]
    calls = []

    def oom_once(cfg, **kwargs):
        calls.append(cfg.train.checkpoint_stages)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return train(cfg, **kwargs)

    monkeypatch.setattr(training, "train", oom_once)
    opts = parse_options(argv)
    got = measure_throughput(opts, recipe(opts, tmp_path / "work"), 900.0)
    assert calls == [False, True] and opts.overrides[-1] == "train.checkpoint_stages=true"
    assert got["checkpoint_stages"] is True and got["model_overrides"] == {} and got["steps"] == 3
    assert got["images_per_s"] > 0 and got["batch_size"] == 2 and got["amp"] == "off"

    calls.clear()  # a model without stage checkpointing has nothing to retry with
    opts = parse_options([*argv[:4], "--model", "nafnet-small", *argv[6:]])
    with pytest.raises(torch.OutOfMemoryError):
        measure_throughput(opts, recipe(opts, tmp_path / "work2"), 900.0)
    assert calls == [False]


def test_a_failing_phase_is_recorded_and_fails_the_run(tmp_path):
    out = tmp_path / "out"
    argv = ["--device", "cpu", "--model", "interir-tiny", "--data", str(tmp_path / "missing"),
            "--out", str(out), "--work", str(tmp_path / "work"), "--skip", "tests", "bench"]
    assert gpurun_main(argv) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["phases"]["tests"] == {"status": "skipped"}
    assert report["phases"]["train"]["status"] == "error"
    (error,) = report["errors"]
    assert error["phase"] == "train" and "missing/bsds432' does not exist" in error["error"]
    assert [f["name"] for f in report["out"]["files"]] == ["report.json"]  # no weights, nothing else


def _sized_folder(root: Path) -> Path:
    """A shared training folder of files with known sizes (selection never decodes them): the 8
    held-out names (100 B each), 10 training JPEGs (1000 B), an overlapping one, two photos
    (5000 B), notes, and a folder the recipe does not read."""
    (root / "bsds432").mkdir(parents=True)
    (root / "photos").mkdir()
    (root / "RainTrainL" / "rainy").mkdir(parents=True)
    for name in VAL_NAMES:
        (root / "bsds432" / name).write_bytes(b"v" * 100)
    for i in range(10):
        (root / "bsds432" / f"train_{i}.jpg").write_bytes(b"t" * 1000)
    (root / "bsds432" / "train_rain.jpg").write_bytes(b"r" * 700)
    (root / "bsds432" / "overlap_with_Rain100H.txt").write_text("# overlap\ntrain_rain.jpg\tx.png\t1.0\n")
    (root / "photos" / "a.jpg").write_bytes(b"p" * 5000)
    (root / "photos" / "b.jpg").write_bytes(b"p" * 5000)
    (root / "photos" / "SOURCE.txt").write_text("where the photos come from\n")
    (root / "RainTrainL" / "rainy" / "1.png").write_bytes(b"x" * 300)
    return root


def test_selection_keeps_validation_fills_the_room_in_seeded_order_and_lists_what_is_left(tmp_path):
    source = _sized_folder(tmp_path / "train")
    required = 8 * 100 + (source / "bsds432" / "overlap_with_Rain100H.txt").stat().st_size + 27
    sel = select_images(source, VAL_NAMES, room=required + 7500, seed=0)
    assert sorted(sel.required) == sorted(["bsds432/overlap_with_Rain100H.txt", "photos/SOURCE.txt",
                                           *(f"bsds432/{n}" for n in VAL_NAMES)])
    assert sel.validation == 8 and sel.available == 12  # 10 + 2 photos; the overlap is not one
    chosen = sel.bytes(sel.chosen)
    assert chosen <= 7500 and len(sel.chosen) >= 2
    past = sel.left_out[-1]
    assert past["reason"] == "the payload would pass its target size"
    assert past["files"] == 12 - len(sel.chosen) and set(past["names"]).isdisjoint(sel.chosen)
    assert all(sel.sizes[n] > 7500 - chosen for n in past["names"])  # nothing left out that still fits
    assert [(e["what"], e["files"], e["bytes"]) for e in sel.left_out[:2]] == [
        ("RainTrainL/", 1, 300), ("images listed in bsds432/overlap_with_Rain100H.txt", 1, 700)]
    again = select_images(source, VAL_NAMES, room=required + 7500, seed=0)
    assert again.chosen == sel.chosen  # fixed by the seed
    orders = {tuple(select_images(source, VAL_NAMES, 10**6, seed).chosen) for seed in range(4)}
    assert len(orders) > 1 and all(len(o) == 12 for o in orders)  # room for all: every one carried
    with pytest.raises(PrepareError, match="not in .*bsds432.*pass the shared training folder"):
        select_images(source, VAL_NAMES | {"test_0.jpg"}, 10**6)


def test_prepare_writes_the_manifest_replaces_its_copy_and_refuses_when_too_little_fits(tmp_path):
    source = _sized_folder(tmp_path / "train")
    out, whl = tmp_path / "gpu-data", tmp_path / "whl"
    (out / "train" / "photos").mkdir(parents=True)
    (out / "train" / "photos" / "mine.jpg").write_bytes(b"m")
    with pytest.raises(PrepareError, match="not made by this step"):  # someone else's folder: kept
        prepare(source, out, whl, REPO, offline=True)
    assert (out / "train" / "photos" / "mine.jpg").is_file()
    (out / "prepare.json").write_text("{}")  # now it is one of ours: replaced
    manifest = prepare(source, out, whl, REPO, offline=True)
    assert read_manifest(out / "train") == manifest and not (out / "train" / "photos" / "mine.jpg").exists()
    train = out / "train"
    copied = sorted(p.relative_to(train).as_posix() for p in train.rglob("*") if p.is_file())
    assert len(copied) == 8 + 10 + 2 + 2 and "bsds432/train_rain.jpg" not in copied
    repo_bytes = sum(repository_files(REPO, skip=[out, whl]).values())
    payload = manifest["payload"]
    assert payload["repository_bytes"] == repo_bytes and payload["data_bytes"] == sum(
        (out / "train" / n).stat().st_size for n in copied)
    assert payload["bytes"] == repo_bytes + 4 * 2**20 + 64 * 1024 + payload["data_bytes"] <= TARGET_BYTES
    with pytest.raises(PrepareError, match="make the repository smaller"):
        prepare(source, tmp_path / "small", whl, REPO, offline=True, target=repo_bytes + 4 * 2**20)
    assert not (tmp_path / "small" / "train").exists()  # nothing copied when it does not fit


@pytest.mark.skipif(not (SHARED_TRAIN / "bsds432").is_dir(), reason="needs ../shared/data/train")
def test_the_shared_training_images_are_prepared_within_the_limit(tmp_path):
    out = tmp_path / "gpu-data"
    manifest = prepare(SHARED_TRAIN, out, tmp_path / "whl", REPO, offline=True)
    measured = (sum(repository_files(REPO, skip=[out]).values()) + 4 * 2**20
                + sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    assert measured <= manifest["payload"]["bytes"] <= TARGET_BYTES  # what a call would send
    carried = manifest["carried"]
    assert carried["validation_images"] == 8 and carried["training_images"] >= 100
    assert all((out / "train" / "bsds432" / n).is_file() for n in VAL_NAMES)
    assert {"RainTrainL/", "depth_middlebury/"} <= {e["what"] for e in manifest["left_out"]}
