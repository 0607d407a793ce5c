"""One way to load a model, one device rule: ``interir restore``, ``eval`` and ``explain`` (and the
trainer) turn ``--device auto`` into a device through interir.utils.device.resolve_device."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import interir
from interir import loading
from interir.cli import _load_commands
from interir.cli.app import app
from interir.engine.distributed import rank_device
from interir.utils.device import resolve_device

_load_commands()
DATA = Path(__file__).parent / "data"
# (CUDA available, MPS available) -> what "auto" must mean everywhere
MACHINES = {"gpu": (True, False, "cuda"), "mac": (False, True, "mps"), "cpu-only": (False, False, "cpu")}


class _Stop(Exception):
    """Raised by the spy once the model's device is known; no command catches it."""


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    image, out = str(DATA / "camera.png"), str(tmp_path / "out")
    return {
        "restore": ["restore", image, "-o", out, "-m", "interir-tiny", "--device", "auto"],
        "eval": ["eval", str(DATA), "-o", out, "-m", "interir-tiny", "--device", "auto"],
        "explain": ["explain", image, "-o", out, "-m", "interir-tiny", "--device", "auto"],
    }


@pytest.mark.parametrize("machine", list(MACHINES))
def test_restore_eval_and_explain_pick_the_same_auto_device(machine, tmp_path, monkeypatch):
    cuda, mps, expected = MACHINES[machine]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    seen: list[torch.device] = []

    def spy(name: str, device: torch.device):
        seen.append(device)
        raise _Stop

    monkeypatch.setattr(loading, "_random_weights", spy)
    for command, args in _commands(tmp_path).items():
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, _Stop), (command, result.output)
    assert [d.type for d in seen] == [expected] * 3
    assert resolve_device("auto").type == expected
    # The trainer's rule is the same, plus torchrun's local rank for CUDA.
    assert rank_device("auto", 1) == (torch.device("cuda", 1) if cuda else torch.device(expected))


def test_an_absent_device_fails_with_the_fix_everywhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cpu"):
        interir.load_model("interir-tiny", "cuda")
    with pytest.raises(ValueError, match="train.device=cpu"):
        rank_device("cuda")


def test_load_pretrained_refuses_an_architecture_name():
    with pytest.raises(interir.pretrained.PretrainedError, match="no shipped pretrained model"):
        interir.load_pretrained("interir-tiny")
