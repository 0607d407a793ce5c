"""The data prefetch thread (issue 25, [ours]): same batches, same training, clear misuse errors."""

import threading

import pytest
import torch
from safetensors.torch import load_file

from interir.data.prefetch import Prefetcher, prefetch_wanted
from interir.data.training import TrainingBatches
from interir.engine.train import train
from tests.helpers import tiny_train_config


def test_prefetched_batches_are_the_plain_ones(tmp_path):
    cfg = tiny_train_config(tmp_path, "p", "data.augment=true", "train.batch_size=3")
    plain = TrainingBatches(cfg, torch.device("cpu"), 0, 1, 3, 0)
    ahead = Prefetcher(TrainingBatches(cfg, torch.device("cpu"), 0, 1, 3, 0))
    try:
        for step in range(5):
            x, y = plain.get(step)
            px, py = ahead.get(step)
            assert torch.equal(x, px) and torch.equal(y, py), step
            assert ahead.last_records == plain.last_records
            assert not torch.equal(x, y)  # degraded: the comparison is not of clean copies
        assert len(ahead) == len(plain) and ahead.kind == plain.kind
        with pytest.raises(RuntimeError, match="read in order: asked for step 9, step 5 was prepared"):
            ahead.get(9)
    finally:
        ahead.close()
    assert not any(t.name.startswith("interir-prefetch") for t in threading.enumerate())


def test_a_prefetching_run_trains_the_same_weights(tmp_path):
    """Checkpoints every step (the global RNG state is captured while the thread seeds it) and
    a stop and resume in the middle: the weights equal those of a run without the thread."""
    common = ("train.ckpt_every=1", "data.augment=true")
    plain = train(tiny_train_config(tmp_path, "off", "data.prefetch=false", *common))
    train(tiny_train_config(tmp_path, "on", "data.prefetch=true", *common), max_steps=2)
    ahead = train(tiny_train_config(tmp_path, "on", "data.prefetch=true", *common), resume=True)
    assert ahead.completed
    a = load_file(plain.last_checkpoint / "model.safetensors")
    b = load_file(ahead.last_checkpoint / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("setting,procs,threads,cores,want", [
    (True, 2, 1, 2, True), (False, 1, 1, 8, False),
    ("auto", 1, 1, 2, True), ("auto", 2, 1, 2, False), ("auto", 1, 2, 2, False), ("auto", 2, 2, 8, True),
])
def test_auto_prefetches_only_with_a_spare_core(monkeypatch, setting, procs, threads, cores, want):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert prefetch_wanted(setting, procs, threads) is want


def test_a_bad_setting_is_refused_with_the_choices(tmp_path):
    with pytest.raises(Exception, match="auto"):
        tiny_train_config(tmp_path, "bad", "data.prefetch=sometimes")
