"""Evaluation engine and `interir eval` on tiny synthetic suites and paired folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from interir.classical import create_classical
from interir.engine import evaluate as evaluate_module
from interir.engine.evaluate import EvalOptions, evaluate, open_dataset
from interir.loading import resolve_model
from interir.metrics import MetricSettings, psnr, ssim
from interir.metrics.report import INPUT_ROW, SummaryTable, read_csv


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _clean(rng: np.random.Generator, h: int = 32, w: int = 40) -> np.ndarray:
    small = (rng.random((6, 7, 3)) * 255).astype(np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _noisy(clean: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    """ROOT/<combination>/{input,target}/<stem>.png + manifest.json, 2 combos x 2 images."""
    root = tmp_path / "suite"
    rng = np.random.default_rng(0)
    records = []
    for combo, sigma in (("noise", 20.0), ("haze", 8.0)):  # written out of canonical order
        for stem in ("a", "b"):
            clean = _clean(rng)
            _save(root / combo / "target" / f"{stem}.png", clean)
            _save(root / combo / "input" / f"{stem}.png", _noisy(clean, rng, sigma))
            records.append({"combination": combo, "name": stem, "haze_level": None,
                            "noise_level": sigma, "rain_level": None})
    (root / "manifest.json").write_text(json.dumps({"images": records}))
    return root


@pytest.fixture()
def paired(tmp_path: Path) -> Path:
    root = tmp_path / "pairs"
    rng = np.random.default_rng(1)
    for stem in ("x", "y"):
        clean = _clean(rng)
        _save(root / "target" / f"{stem}.png", clean)
        _save(root / "input" / f"{stem}.png", _noisy(clean, rng, 10.0))
    return root


def test_open_dataset_detects_layouts(suite, paired):
    ds = open_dataset(suite)
    assert ds.kind == "synthetic" and len(ds) == 4
    assert ds.combinations == ["haze", "noise"]  # canonical order
    items = list(ds)
    assert items[0].combination == "haze" and items[0].levels == {"noise_level": 8.0}
    assert items[0].input.shape == (3, 32, 40)
    pd = open_dataset(paired, name="mine")
    assert pd.kind == "paired" and pd.name == "mine" and len(pd) == 2
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_dataset(suite / "nope")


def test_identity_model_scores_equal_input_and_table_layout(suite, tmp_path):
    settings = MetricSettings(y_channel=True)
    report = evaluate({"identity": nn.Identity()}, [suite], EvalOptions(settings=settings))
    assert len(report.results) == 4
    for r in report.results:
        assert r.output_psnr == r.input_psnr and r.output_ssim == r.input_ssim
    # the numbers are the metric functions' numbers
    first = list(open_dataset(suite))[0]
    assert report.results[0].input_psnr == pytest.approx(
        psnr(first.input, first.target, y_channel=True).item(), abs=1e-9)
    assert report.results[0].input_ssim == pytest.approx(
        ssim(first.input, first.target, y_channel=True).item(), abs=1e-12)

    table = report.table
    assert table.columns == ["haze", "noise"]
    assert table.rows == [INPUT_ROW, "identity"]
    assert table.cells["identity"] == table.cells[INPUT_ROW]
    assert table.gain("identity") == pytest.approx(0.0)
    haze = [r.input_psnr for r in report.results if r.combination == "haze"]
    noise = [r.input_psnr for r in report.results if r.combination == "noise"]
    assert table.cells[INPUT_ROW]["haze"].psnr == pytest.approx(np.mean(haze))
    assert table.average(INPUT_ROW).psnr == pytest.approx((np.mean(haze) + np.mean(noise)) / 2)
    assert np.mean(haze) > np.mean(noise) + 5  # sigma 8 vs 20
    md = table.to_markdown()
    assert "| Method | haze | noise | Average | Gain (dB) |" in md
    assert settings.describe() in md

    paths = report.write(tmp_path / "out")
    assert SummaryTable.from_json(paths["json"].read_text()).cells == table.cells
    rows = read_csv(paths["csv"])
    assert len(rows) == 4 and rows[0].levels == {"noise_level": 8.0}


def test_several_models_and_datasets_in_one_table(suite, paired, tmp_path):
    class Blur(nn.Module):
        def forward(self, x):
            return nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    report = evaluate({"identity": nn.Identity(), "blur": Blur()}, [suite, paired],
                      EvalOptions(save_images_to=tmp_path / "imgs"))
    assert len(report.results) == 2 * (4 + 2)
    table = report.table
    assert table.columns == ["suite/haze", "suite/noise", "pairs"]
    assert table.rows == [INPUT_ROW, "identity", "blur"]
    assert table.cells[INPUT_ROW]["pairs"].n == 2  # input scored once, not per model
    # blurring removes sigma-20 noise better than doing nothing
    assert table.cells["blur"]["suite/noise"].psnr > table.cells["identity"]["suite/noise"].psnr
    saved = sorted(p.relative_to(tmp_path / "imgs").as_posix()
                   for p in (tmp_path / "imgs").rglob("*.png"))
    assert len(saved) == 12
    assert "blur/suite/haze/a.png" in saved and "identity/pairs/x.png" in saved


def test_classical_model_specs_and_labels(suite):
    label, model = resolve_model("classical-dcp")
    assert label == "classical-dcp"
    label, _ = resolve_model("DCP=classical-dcp")
    assert label == "DCP"
    with pytest.raises(FileNotFoundError):
        resolve_model("no-such-model-or-path")
    report = evaluate(["DCP=classical-dcp"], [suite], EvalOptions(limit=1))
    # The limit applies per combination, so a quick look still fills every column.
    assert len(report.results) == 2 and report.table.rows == [INPUT_ROW, "DCP"]
    assert sorted(r.combination for r in report.results) == ["haze", "noise"]


def test_cli_eval_writes_reports(suite, paired, tmp_path):
    import interir.cli.evaluate  # noqa: F401  (registers the command)
    import interir.cli.models  # noqa: F401  (a second command keeps `app` a command group)
    from interir.cli.app import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "eval", str(suite), str(paired), "--model", "classical-dcp", "--out", str(out),
        "--y-channel", "--round-y", "--crop-border", "2", "--save-images", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "MATLAB" in result.output
    assert "| Method | suite/haze | suite/noise | pairs |" in result.output
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["model"] for r in rows} == {"classical-dcp"}
    data = json.loads((out / "summary.json").read_text())
    assert data["metric_settings"]["crop_border"] == 2 and data["metric_settings"]["round_y"]
    assert [r["method"] for r in data["rows"]] == [INPUT_ROW, "classical-dcp"]
    assert len(list((out / "images").rglob("*.png"))) == 6

    bad = CliRunner().invoke(app, ["eval", str(suite), "--model", "classical-dpc",
                                   "--out", str(out), "--overwrite"])
    assert bad.exit_code == 1 and "classical-dcp" in bad.output
    bad = CliRunner().invoke(app, ["eval", str(suite), "--round-y", "--out", str(out)])
    assert bad.exit_code == 2


def test_suite_written_by_interir_synth(tmp_path):
    """The real `interir synth` writer: manifest levels reach the per-image results."""
    from interir.data import synthesize_suite

    clean_dir = tmp_path / "clean"
    rng = np.random.default_rng(3)
    _save(clean_dir / "p.png", _clean(rng, 48, 64))
    synthesize_suite(clean_dir, tmp_path / "synth", seed=0, combinations=["haze+noise", "rain"],
                     levels="haze=100,rain=200,noise=25")
    report = evaluate({"identity": nn.Identity()}, [tmp_path / "synth"])
    assert report.table.columns == ["rain", "haze+noise"]
    by_combo = {r.combination: r for r in report.results}
    assert by_combo["rain"].levels["rain_level"] == pytest.approx(200)
    assert by_combo["haze+noise"].levels["noise_level"] == pytest.approx(25)
    assert by_combo["haze+noise"].input_psnr < 30


def test_networks_go_through_restore_tensor_classical_do_not(monkeypatch, suite):
    calls = []

    def restore_tensor(model, image, tile=None, overlap=None, precision=None, channels_last=None,
                       backend=None):
        calls.append((type(model).__name__, tuple(image.shape), tile, precision, channels_last,
                      backend))
        return model(image)

    monkeypatch.setattr(evaluate_module, "restore_tensor", restore_tensor)

    evaluate({"id": nn.Identity(), "dcp": create_classical("classical-dcp")}, [suite],
             EvalOptions(tile=64, limit=1))
    # one image per combination; scored with the reference settings whatever restore's defaults are
    assert calls == [("Identity", (1, 3, 32, 40), 64, "fp32", False, "torch")] * 2
    calls.clear()  # interir eval's fast paths: float32 still, in another layout or runtime
    evaluate({"id": nn.Identity()}, [suite],
             EvalOptions(tile=64, limit=1, channels_last=True, backend="onnx"))
    assert calls == [("Identity", (1, 3, 32, 40), 64, "fp32", True, "onnx")] * 2


def _result(model, dataset, combination, name, inp, out):
    from interir.metrics.report import ImageResult

    return ImageResult(model, dataset, combination, name, None, inp, 0.5, out, 0.6)


def _tables():
    from interir.metrics.report import summarize

    rgb = MetricSettings()
    y = MetricSettings(y_channel=True)
    synth_a = summarize([_result("ours", "mdir", "haze", "1", 15.0, 20.0),
                         _result("ours", "mdir", "noise", "1", 23.0, 22.0),
                         _result("nlm", "mdir", "haze", "1", 15.0, 15.5),
                         _result("nlm", "mdir", "noise", "1", 23.0, 28.0)], rgb, title="MDIR")
    synth_b = summarize([_result("base", "mdir", "haze", "1", 15.0, 18.0),
                         _result("base", "mdir", "noise", "1", 23.0, 24.0)], rgb, title="MDIR b")
    real = summarize([_result("ours", "Rain100H", "", "1", 13.0, 16.0),
                      _result("nlm", "Rain100H", "", "1", 13.0, 13.0)], y, title="real")
    return synth_a, synth_b, real


def test_combine_tables_merges_runs_and_lists_shortfalls():
    from interir.metrics.report import combine_tables

    synth_a, synth_b, real = _tables()
    combined = combine_tables([synth_a, real, synth_b], title="All")
    assert combined.rows == [INPUT_ROW, "ours", "nlm", "base"]
    assert combined.columns == ["haze (RGB)", "noise (RGB)", "Average [1] (RGB)",
                                "Rain100H (Y)", "Average [2] (Y)"]
    assert combined.cells["base"]["Average [1] (RGB)"].psnr == pytest.approx(21.0)
    assert "Rain100H (Y)" not in combined.cells["base"]
    misses = combined.shortfalls("ours", [INPUT_ROW, "nlm"])
    assert [(m.column, m.rival) for m in misses] == [("noise (RGB)", INPUT_ROW), ("noise (RGB)", "nlm")]
    text = combined.to_markdown(check="ours", rivals=[INPUT_ROW, "nlm"])
    assert "| ours | **20.00/0.6000** | 22.00/0.6000 |" in text
    assert "nlm on noise (RGB) (22.00 vs 28.00)" in text
    assert "base beats Input on the PSNR of every column" in combined.to_markdown("base", [INPUT_ROW])


def test_combine_tables_refuses_ambiguous_input():
    from interir.metrics.report import combine_tables, summarize

    synth_a, _, _ = _tables()
    with pytest.raises(ValueError, match="scored twice"):
        combine_tables([synth_a, synth_a])
    other_images = summarize([_result("x", "mdir", "haze", "1", 14.0, 20.0),
                              _result("x", "mdir", "noise", "1", 23.0, 20.0)], MetricSettings())
    with pytest.raises(ValueError, match="Input rows disagree"):
        combine_tables([synth_a, other_images])
    with pytest.raises(ValueError, match="nothing to combine"):
        combine_tables([])


def test_cli_report(tmp_path):
    import interir.cli.report  # noqa: F401  (registers the command)
    import interir.cli.models  # noqa: F401
    from interir.cli.app import app

    synth_a, _, real = _tables()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(synth_a.to_json())
    (tmp_path / "real.json").write_text(real.to_json())
    out = tmp_path / "table.md"
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "real.json"),
                                      "--check", "ours", "--rivals", "Input,nlm", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "does not beat" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["method"] == INPUT_ROW
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--check", "theirs"])
    assert bad.exit_code == 1 and "no row 'theirs'" in bad.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 1 and "not found" in bad.output
