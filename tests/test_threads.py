"""Tests for interir.utils.threads: one thread rule for every entry point (issue 30).

explicit argument > the command's own choice > INTERIR_THREADS > 1; 0 keeps torch's setting.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from interir.cli import _load_commands
from interir.cli.app import app
from interir.inference import restore_tensor
from interir.utils.threads import THREADS_ENV, resolve_threads, thread_count

_load_commands()
runner = CliRunner()


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "")  # empty counts as unset; monkeypatch puts it back
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def test_rule_order(no_env):
    assert resolve_threads() == 1
    no_env.setenv(THREADS_ENV, "3")
    assert resolve_threads() == 3
    assert resolve_threads(command=2) == 2
    assert resolve_threads(explicit=5, command=2) == 5
    assert resolve_threads(explicit=0) == 0


@pytest.mark.parametrize("bad", ["two", "-1", "1.5"])
def test_a_bad_variable_names_the_fix(no_env, bad):
    no_env.setenv(THREADS_ENV, bad)
    with pytest.raises(ValueError, match="INTERIR_THREADS.*whole number"):
        resolve_threads()


def test_thread_count_is_put_back(no_env):
    torch.set_num_threads(2)
    with thread_count() as inside:
        assert inside == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == 2
    with thread_count(0) as inside:  # 0: torch's own
        assert inside == 2
    import os
    assert os.environ[THREADS_ENV] == ""


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return x * self.scale


def test_restore_tensor_follows_the_rule_and_restores_torch(no_env):
    torch.set_num_threads(2)
    model = _Recorder()
    restore_tensor(model, torch.rand(3, 16, 16))
    restore_tensor(model, torch.rand(3, 16, 16), threads=2)
    no_env.setenv(THREADS_ENV, "2")
    restore_tensor(model, torch.rand(3, 16, 16))
    assert model.seen == [1, 2, 2]
    assert torch.get_num_threads() == 2


def test_train_threads_option_reaches_the_config(no_env):
    result = runner.invoke(app, ["train", "cpu-tiny", "--threads", "3", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "threads: 3" in result.output


def test_every_command_has_the_option():
    for command in ("restore", "eval", "explain", "embed", "train", "app"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0 and "--threads" in result.output, command
