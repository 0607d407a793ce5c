"""What a new user meets first (issue 30): errors that say what happened, help texts that show
what they say, and the README's Python snippet, which must run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import interir
from interir.cli import _load_commands
from interir.cli import options
from interir.cli.app import app
from interir import inference
from interir.inference import settings as inference_settings

_load_commands()
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("load", [interir.load_pretrained, interir.load_model])
def test_a_missing_path_is_no_such_file(load):
    with pytest.raises(FileNotFoundError, match="no such file or folder: 'no/such/model.safetensors'"):
        load("no/such/model.safetensors")


def test_a_typo_suggests_the_shipped_names():
    with pytest.raises(FileNotFoundError) as info:
        interir.load_model("default-rian")
    message = str(info.value)
    assert "Did you mean 'default-rain'" in message
    assert "Shipped (trained weights): default, default-rain, default-real, default-v1, eb-" in message
    with pytest.raises(ValueError, match="Did you mean 'default-rain'"):
        interir.load_pretrained("default-rian")


def test_restore_command_reports_the_typo(tmp_path):
    image = tmp_path / "a.png"
    from interir.utils import write_image

    write_image(image, torch.rand(3, 16, 16))
    result = runner.invoke(app, ["restore", str(image), "-o", str(tmp_path / "out"), "-m", "default-rian"])
    assert result.exit_code == 2
    assert "default-rain" in result.output and "eb-nafnet-small" in result.output


def test_restore_help_names_the_earlier_default_and_no_repository_file():
    text = _help("restore")
    assert "default-v1" in text and "dense rain" in text
    assert "benchmarks/" not in text  # not in the wheel


def test_train_help_shows_its_brackets():
    text = _help("train")
    assert "data.train_roots=[my/photos]" in text and "data.train_roots=[a,b]" in text


def test_cli_defaults_equal_the_library_ones():
    assert options.DEFAULT_CHANNELS_LAST == inference_settings.DEFAULT_CHANNELS_LAST
    assert options.DEFAULT_PRECISION == inference_settings.DEFAULT_PRECISION
    assert options.PRECISIONS == inference_settings.PRECISIONS
    assert options.BACKENDS == inference.BACKENDS
    assert options.DEFAULT_BACKEND == inference.DEFAULT_BACKEND


def test_readme_python_snippet_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "restore_tensor" in block)
    from interir.utils import write_image

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "rainy.jpg", torch.rand(3, 40, 56))
    exec(compile(snippet, "README.md", "exec"), {})
    restored = interir.utils.read_image(tmp_path / "restored.png").image
    assert restored.shape == (3, 40, 56)


def test_torch_hub_offers_every_shipped_model():
    rain = torch.hub.load(str(REPO), "interir_rain", source="local", trust_repo=True)
    assert rain.pretrained_name == "default-rain" and not rain.training
    nafnet = torch.hub.load(str(REPO), "interir_pretrained", "eb-nafnet-small", source="local")
    assert nafnet.pretrained_name == "eb-nafnet-small"
    import runpy

    entries = {name for name, value in runpy.run_path(str(REPO / "hubconf.py")).items()
               if callable(value) and name.startswith("interir_")}
    assert {"interir_default", "interir_rain", "interir_pretrained", "interir_model"} <= entries


_WORK_FOLDER = """
import sys, time
from interir.webapp.service import AppSettings, exit_cleanly_on_terminate
settings = AppSettings(models=["interir-tiny"])
(settings.work_dir / "request-x").mkdir()
if sys.argv[1] == "wait":  # the handler first: the test terminates as soon as it reads the line
    exit_cleanly_on_terminate()
print(settings.work_dir, flush=True)
if sys.argv[1] == "wait":
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["exit", "wait"])
def test_the_page_removes_its_temporary_work_folder(tmp_path, how):
    """It held 43 MB after 64 requests and was never removed (issue 30); now on exit and on kill."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-c", _WORK_FOLDER, how], env=env,
                               stdout=subprocess.PIPE, text=True)
    folder = Path(process.stdout.readline().strip())
    assert folder.parent == tmp_path and folder.name.startswith("interir-app-")
    if how == "wait":
        assert folder.is_dir()
        process.terminate()
    assert process.wait(timeout=60) == 0
    assert not folder.exists()
