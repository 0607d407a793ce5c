"""The one progress display of the long commands (interir.utils.progress), the per-tile and
per-image callbacks under it, and the thread-count help and benchmark (issue 16)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import interir
from interir.cli import _load_commands
from interir.cli.app import app
from interir.engine.evaluate import EvalOptions, evaluate
from interir.inference import plan_tiles, restore_paths, restore_tensor
from interir.inference.tiling import tiled_apply
from interir.utils.progress import ProgressDisplay, choose_mode, format_seconds
from interir.cli.options import THREADS_HELP
from interir.utils.threads import DEFAULT_THREADS, apply_threads

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
_load_commands()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _save(path: Path, height: int, width: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return interir.create_model("interir-tiny", width=8, stages=1).eval()


# ------------------------------------------------------------------------------- the display


def test_mode_is_rich_only_when_both_streams_are_terminals():
    assert choose_mode(_Tty(), _Tty()) == "rich"
    assert choose_mode(io.StringIO(), _Tty()) == "plain"
    assert choose_mode(_Tty(), io.StringIO()) == "plain"
    with pytest.raises(ValueError, match="mode"):
        ProgressDisplay(1, mode="fancy")


def test_plain_status_lines_are_throttled_but_the_last_is_always_printed():
    out, err = io.StringIO(), io.StringIO()
    with ProgressDisplay(3, "pairs", mode="plain", interval=3600, out=out, err=err) as display:
        for done in (1, 2, 3):
            display.update(done, 3, f"haze/img{done}")
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[3/3 pairs]") and "haze/img3" in lines[0]
    assert out.getvalue() == "" and len(display.item_seconds) == 3
    assert display.summary().startswith("3 pairs in ") and "per pair" in display.summary()


def test_plain_step_lines_follow_step_interval():
    err = io.StringIO()
    with ProgressDisplay(1, mode="plain", interval=None, step_interval=0.0, err=err) as display:
        display.start("photo.jpg")
        for done in range(1, 5):
            display.steps(done, 4)
        display.steps(1, 1)  # a one-step item prints no step line
        display.finish()
    assert err.getvalue().splitlines()[-1].startswith("  photo.jpg: tile 4/4,")
    assert err.getvalue().count("tile") == 4  # interval=None: no status line either
    quiet = io.StringIO()
    with ProgressDisplay(1, mode="off", err=quiet, out=quiet) as display:
        display.start("a")
        display.steps(1, 2)
        display.finish()
        display.print("kept")
    assert quiet.getvalue() == "kept\n"


def test_rich_mode_draws_bars_and_prints_lines_above_them():
    err = io.StringIO()
    with ProgressDisplay(2, "images", mode="rich", out=err, err=err) as display:
        display.start("a.png")
        display.steps(2, 3)
        display.print("written a.png")
        display.finish()
    text = err.getvalue()
    assert "written a.png" in text and "images" in text and "1/2" in text


def test_format_seconds():
    assert format_seconds(0.421) == "0.42 s"
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(125) == "2 min 05 s"


# ------------------------------------------------------------------------------- callbacks


def test_tile_callback_is_called_once_per_tile(tiny):
    image = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    calls: list[tuple[int, int]] = []
    tiled_apply(lambda t: t * 2, image, 32, 8, 4, progress=lambda d, t: calls.append((d, t)))
    count = plan_tiles(70, 90, 32, 8, 4).count
    assert count > 1 and calls == [(k, count) for k in range(1, count + 1)]
    calls.clear()
    restore_tensor(tiny, image[0], tile=32, overlap=8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, count) for k in range(1, count + 1)]
    calls.clear()
    restore_tensor(tiny, image[0], tile=0, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]


def test_restore_paths_announces_each_image_before_restoring_it(tmp_path, tiny):
    files = [_save(tmp_path / "a.png", 12, 16), _save(tmp_path / "b.png", 14, 10, 1)]
    events: list[tuple] = []
    report = restore_paths(
        files + [tmp_path / "missing.png"], tmp_path / "out", tiny,
        on_start=lambda src, i, n: events.append(("start", src.name, i, n)),
        on_result=lambda status, src, detail: events.append((status, src.name)))
    assert len(report.written) == 2
    assert events == [("failed", "missing.png"), ("start", "a.png", 1, 3), ("written", "a.png"),
                      ("start", "b.png", 2, 3), ("written", "b.png")]


def test_evaluate_reports_each_scored_image(tmp_path):
    for kind in ("input", "target"):
        (tmp_path / "pairs" / kind).mkdir(parents=True)
        for i in range(3):
            _save(tmp_path / "pairs" / kind / f"p{i}.png", 16, 16, i)
    calls: list[tuple[int, int, str]] = []
    options = EvalOptions(device="cpu", limit=2, progress=lambda *c: calls.append(c))
    evaluate({"same": lambda x: x}, [tmp_path / "pairs"], options)
    assert calls == [(1, 2, "pairs/p0"), (2, 2, "pairs/p1")]


# ------------------------------------------------------------------------------- the commands


def test_restore_prints_one_line_per_image_with_its_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "big.png", 70, 90)
    _save(tmp_path / "small.png", 12, 16, 1)
    result = runner.invoke(app, ["restore", "big.png", "small.png", "-o", "out", "-m",
                                 "interir-tiny", "--tile", "32", "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("written")]
    assert len(lines) == 2 and "big.png -> out/big.png" in lines[0]
    assert all(re.search(r"\(\d+\.\d\d s\)$", line) for line in lines)
    assert re.search(r"2 written, 0 failed in [0-9.]+ s \([0-9.]+ s per image\)", result.output)
    quiet = runner.invoke(app, ["restore", "big.png", "-o", "q", "-m", "interir-tiny", "-q"])
    assert quiet.exit_code == 0 and "written big.png" not in quiet.output
    assert "1 written, 0 failed" in quiet.output


def test_help_states_the_thread_default_and_no_stale_tile_text():
    assert DEFAULT_THREADS == 1 and "else 1, chosen by measurement" in THREADS_HELP
    assert "INTERIR_THREADS" in THREADS_HELP and "benchmarks/" not in THREADS_HELP  # not in the wheel
    for command in ("restore", "eval", "explain"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
        text = " ".join(result.output.split())
        assert result.exit_code == 0 and "else 1, chosen by measurement" in text
    restore_help = " ".join(runner.invoke(app, ["restore", "--help"],
                                          env={"COLUMNS": "300"}).output.split())
    assert "interir-small" not in restore_help and "512 for the default model" in restore_help


def test_apply_threads_sets_torch_and_refuses_negative(monkeypatch):
    monkeypatch.setenv("INTERIR_THREADS", "")  # empty counts as unset; put back after the test
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1 == torch.get_num_threads()
        assert apply_threads(None) == 1  # nothing given: 1
        with pytest.raises(ValueError):
            apply_threads(-1)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------- benchmark


def _benchmark():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import thread_default
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return thread_default


def test_benchmark_picks_the_count_never_much_worse():
    bench = _benchmark()
    medians = {("idle", 1): (2.0, 5.0), ("idle", 2): (1.2, 4.0),
               ("busy", 1): (2.2, 5.0), ("busy", 2): (30.0, 40.0)}
    ratios = bench.worst_ratios(medians)
    assert ratios == pytest.approx({1: 2.0 / 1.2, 2: 30.0 / 2.2})
    args = bench.parse_args(["--threads", "1,2"])
    text = bench.report(args, medians, ratios)
    assert "Never much worse: **1 thread(s)**" in text and "| busy | 2 | 30.00 |" in text


def test_benchmark_dry_run_writes_its_table(tmp_path):
    bench = _benchmark()
    out = tmp_path / "thread_default.md"
    bench.main(["--dry-run", "--threads", "1", "--loads", "idle,busy", "--model", "interir-tiny",
                "--out", str(out)])
    text = out.read_text()
    assert "| idle | 1 |" in text and "| busy | 1 |" in text and "dry run" in text
