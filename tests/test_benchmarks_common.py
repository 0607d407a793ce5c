"""benchmarks/_common.py: results named after their script, the reproducing command in every file,
and every file under benchmarks/results/ named after the script that makes it (or saying that none
does)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _common
    finally:
        sys.path.remove(str(BENCHMARKS))
    return _common


def test_results_stem_is_named_after_the_script_wherever_it_runs(common, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert common.results_stem("/x/y/model_speed.py") == BENCHMARKS / "results" / "model_speed"
    assert common.command("benchmarks/scaling.py", ["--sizes", "256,512", "--out", "a b"]) == (
        "python benchmarks/scaling.py --sizes 256,512 --out 'a b'")


def test_write_results_puts_the_command_under_the_title_and_in_the_json(common, tmp_path):
    paths = common.write_results(tmp_path / "sub" / "demo", {"rows": [1, 2]},
                                 "# Title\n\nbody line\n", "benchmarks/demo.py", ["--fast"])
    assert [p.name for p in paths] == ["demo.json", "demo.md"]
    lines = paths[1].read_text().splitlines()
    assert lines[0] == "# Title" and lines[1] == "" and lines[3] == "" and lines[4] == "body line"
    assert lines[2].startswith("Made by `python benchmarks/demo.py --fast`")
    data = json.loads(paths[0].read_text())
    assert data["command"] == "python benchmarks/demo.py --fast" and data["rows"] == [1, 2]
    assert {"torch", "python", "cpu_capability", "interir"} <= set(data["environment"])
    only_json = common.write_results(tmp_path / "j", [3], None, "benchmarks/demo.py", [])
    assert [p.name for p in only_json] == ["j.json"] and json.loads(only_json[0].read_text()) == [3]
    only_md = common.write_results(tmp_path / "m", None, "# T\n", "benchmarks/demo.py", [])
    assert [p.name for p in only_md] == ["m.md"] and not (tmp_path / "m.json").exists()


def test_time_calls_warms_up_then_times_each_call(common):
    calls = []
    times = common.time_calls(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)
    assert common.median_ms([0.001, 0.003, 0.002]) == pytest.approx(2.0)


def test_every_results_file_is_named_after_its_script_or_says_none_makes_it():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_")}
    strays = []
    for path in sorted((BENCHMARKS / "results").iterdir()):
        stem = path.name.split(".")[0]
        if stem in scripts or any(stem.startswith(s + "_") for s in scripts):
            continue
        if path.suffix == ".md" and "no script makes this file" in path.read_text()[:1000]:
            continue
        strays.append(path.name)
    assert strays == []
