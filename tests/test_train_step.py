"""The trainer's parts on their own: TrainState, train_step and the per-step batches."""

import copy
from pathlib import Path

import torch

from interir.config import load_config
from interir.data.training import TrainingBatches
from interir.engine.train import train_step
from interir.engine.train_state import build_state
from interir.losses import RestorationLoss
from interir.utils.seed import seed_everything

DATA = Path(__file__).parent / "data"


def _cfg(tmp_path):
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 2}},
        "data": {"train_roots": [str(DATA)], "patch_size": 32},
        "optim": {"grad_clip": 0.5},
        "train": {"iterations": 8, "batch_size": 2, "ema_decay": 0.9, "device": "cpu"},
        "output": {"dir": str(tmp_path), "name": "step"},
    }
    return load_config(None, [], base=base)


def test_train_step_is_one_optimizer_step_on_the_state(tmp_path):
    """train_step = forward, loss, backward, clipping, Adam, schedule, EMA: the same step written
    out by hand gives the same loss, gradient norm and weights. (Gradient accumulation would go
    into train_step alone; see its docstring.)"""
    cfg = _cfg(tmp_path)
    seed_everything(0)
    state = build_state(cfg, torch.device("cpu"))
    by_hand = copy.deepcopy(state.model)
    batches = TrainingBatches(cfg, torch.device("cpu"), rank=0, world_size=1, per_rank=2, start_step=0)
    inputs, target = batches.get(0)
    assert inputs.shape == target.shape == (2, 3, 32, 32) and not torch.equal(inputs, target)

    losses, grad_norm = train_step(state, inputs, target)
    assert state.step == 1 and state.scheduler.last_epoch == 1 and state.ema.updates == 1

    adam = torch.optim.Adam(by_hand.parameters(), lr=cfg.optim.lr)
    loss = RestorationLoss(cfg.loss.fft_weight)(by_hand(inputs), target)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(by_hand.parameters(), cfg.optim.grad_clip)
    adam.step()
    torch.testing.assert_close(losses[0], loss.detach())
    torch.testing.assert_close(grad_norm, norm)
    for (name, p), q in zip(by_hand.named_parameters(), state.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)
    batches.close()


def test_the_batches_of_a_step_do_not_depend_on_what_came_before(tmp_path):
    """Step s's batch is a function of (seed, s): a stream started at step 3 (a resume) gives the
    batch that a stream reading steps 0-3 gives at step 3."""
    cfg, cpu = _cfg(tmp_path), torch.device("cpu")
    straight = TrainingBatches(cfg, cpu, rank=0, world_size=1, per_rank=2, start_step=0)
    for step in range(3):
        straight.get(step)
    resumed = TrainingBatches(cfg, cpu, rank=0, world_size=1, per_rank=2, start_step=3)
    for a, b in zip(straight.get(3), resumed.get(3)):
        assert torch.equal(a, b)
