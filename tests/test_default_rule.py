"""scripts/default_rule.py: the rule that decides whether a candidate ships as `default`."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "default_rule.py"
spec = importlib.util.spec_from_file_location("default_rule", SCRIPT)
default_rule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(default_rule)

V1 = {"psnr": 20.99, "sets": {"rain": 16.86, "haze": 23.66}}
RAIN = {"psnr": 21.14, "sets": {"rain": 21.00, "haze": 23.71}}


def test_a_candidate_ships_only_above_on_the_mean_and_near_on_every_set():
    ships, lines = default_rule.verdict([V1, RAIN, {"psnr": 21.5, "sets": {"rain": 20.2, "haze": 24.0}}], 1.0)
    assert ships and "floor 20.000" in lines[1]
    # above on the mean, but 1.01 dB below default-rain on the rain set
    ships, lines = default_rule.verdict([V1, RAIN, {"psnr": 21.5, "sets": {"rain": 19.99, "haze": 24.0}}], 1.0)
    assert not ships and lines[1].endswith("BELOW")
    # within every floor, but not above the best shipped mean
    ships, lines = default_rule.verdict([V1, RAIN, {"psnr": 21.14, "sets": {"rain": 21.0, "haze": 23.7}}], 1.0)
    assert not ships and "NOT above" in lines[0]


def test_the_script_exits_with_the_verdict(tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([V1, RAIN, {"psnr": 22.0, "sets": {"rain": 21.5, "haze": 24.0}}]))
    done = subprocess.run([sys.executable, str(SCRIPT), str(scores)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("ships")
    scores.write_text(json.dumps([V1, RAIN, {"psnr": 20.0, "sets": {"rain": 21.5, "haze": 24.0}}]))
    done = subprocess.run([sys.executable, str(SCRIPT), str(scores)], capture_output=True, text=True)
    assert done.returncode == 1 and "does not ship" in done.stdout
