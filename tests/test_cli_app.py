"""What a new user meets first: `interir --version`, `interir app`, shipped configs by name
(`interir train cpu-tiny`) and torch.hub loading through hubconf.py."""

import fnmatch
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import interir
from interir.cli import _load_commands
from interir.cli.app import app
from interir.config import SHIPPED_CONFIG_DIR, list_shipped_configs
from interir.data import read_exclusion_list

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
_load_commands()


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_version_flag_prints_the_installed_version():
    result = _invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"interir {metadata.version('interir')}"
    assert metadata.version("interir") == interir.__version__  # pyproject and package agree


def test_app_command_serves_on_localhost_without_share_by_default(monkeypatch):
    page = pytest.importorskip("interir.webapp.page")
    calls = []
    monkeypatch.setattr(page, "launch", lambda settings, **kw: calls.append((settings, kw)))
    result = _invoke("app", "--port", "7999", "-m", "interir-tiny", "--max-megapixels", "2")
    assert result.exit_code == 0, result.output
    settings, options = calls[0]
    assert options == {"host": "127.0.0.1", "port": 7999, "share": False}
    assert settings.models == ["interir-tiny"] and settings.max_pixels == 2_000_000
    assert "http://127.0.0.1:7999" in result.output
    _invoke("app", "--share")
    assert calls[1][1]["share"] is True and calls[1][0].models == interir.list_pretrained()


def test_app_command_without_gradio_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now fails
    monkeypatch.delitem(sys.modules, "interir.webapp.page", raising=False)
    result = _invoke("app")
    assert result.exit_code == 2
    assert 'pip install "interir[app]"' in result.output


@pytest.mark.skipif(tomllib is None, reason="reading pyproject.toml needs Python 3.11's tomllib")
def test_every_config_is_shipped_as_package_data():
    names = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert list_shipped_configs() == names and "cpu-tiny" in names
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["interir"]
    files = [p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)
    assert SHIPPED_CONFIG_DIR.resolve() == (REPO / "configs").resolve()


def test_train_takes_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as for a pip user
    result = _invoke("train", "cpu-tiny", "train.iterations=9", "--print-config")
    assert result.exit_code == 0, result.output
    assert "name: interir-tiny" in result.output and "iterations: 9" in result.output
    split = str(SHIPPED_CONFIG_DIR / "splits" / "bsds432-val.txt")
    assert split in result.output and Path(split).is_file()
    listed = _invoke("train", "--list-configs")
    assert listed.output.split() == list_shipped_configs()
    missing = _invoke("train", "cpu-tinyy")
    assert missing.exit_code == 2 and "shipped: cpu-default" in missing.output


def test_a_pip_user_trains_a_shipped_config_on_own_photos(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (80, 72), (120, 90, 60)).save(photos / "a.png")
    monkeypatch.chdir(tmp_path)
    result = _invoke("train", "cpu-tiny", "data.train_roots=[photos]", "data.exclude=[]",
                     "data.val.kind=none", "train.batch_size=2", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "cpu-tiny"
    assert (run / "config.yaml").is_file() and any((run / "checkpoints").iterdir())


def test_torch_hub_loads_the_default_model_from_the_repository():
    model = torch.hub.load(str(REPO), "interir_default", source="local", trust_repo=True)
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = interir.load_pretrained()(x)
        got = model(x)
    assert not model.training
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    tiny = torch.hub.load(str(REPO), "interir_model", "interir-tiny", source="local")
    assert tiny.config == interir.create_model("interir-tiny").config


def test_shipped_splits_keep_validation_and_rain100h_targets_apart():
    splits = SHIPPED_CONFIG_DIR / "splits"
    overlap = read_exclusion_list(splits / "bsds432-overlap-rain100h.txt")
    validation = read_exclusion_list(splits / "bsds432-val.txt")
    assert len(overlap) == 67 and len(validation) == 8
    assert not overlap & validation  # validation images were picked outside the overlap
