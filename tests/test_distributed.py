"""DDP under torchrun: 2 CPU processes (gloo) keep identical replicas and the configured global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interir.engine.distributed import params_digest, per_rank_batch
from interir.engine.train import train

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]

CONFIG = """
model: {{name: interir-tiny, overrides: {{width: 8, stages: 2}}}}
data:
  train_roots: [{data}]
  patch_size: 32
  haze_depth: scene   # its depth follows each process's own clean patches: must match one process
optim: {{grad_clip: 0.5}}
train: {{iterations: 3, batch_size: 4, threads: 1, log_every: 1, ckpt_every: 0, device: cpu, ema_decay: 0.9}}
output: {{dir: {out}, name: {name}, tensorboard: "off"}}
"""


def _write_config(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(data=DATA, out=tmp_path / "runs", name=name))
    return path


@pytest.mark.slow
def test_two_gloo_processes_stay_in_sync_and_match_one_process(tmp_path):
    cfg = _write_config(tmp_path, "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "interir.cli", "train", str(cfg)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = tmp_path / "runs" / "ddp"
    replicas = json.loads((run / "replicas.json").read_text())
    assert replicas["world_size"] == 2 and replicas["step"] == 3
    assert replicas["identical"] is True and len(set(replicas["sha256"])) == 1
    # rank 0 alone wrote the run folder: one set of rows, logged as 2 processes x 2 images
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "batch 4 (2 per process)" in (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2

    # the saved weights are the replicas' weights
    import interir

    model = interir.create_model("interir-tiny", width=8, stages=2)
    model.load_state_dict(load_file(run / "checkpoints" / "last" / "model.safetensors"))
    assert params_digest(model) == replicas["sha256"][0]

    # same global batch in one process: same data and degradations, so the same weights up to
    # the order in which gradients are summed
    single = train(_write_config(tmp_path, "single"))
    w1 = load_file(single.run_dir / "checkpoints" / "last" / "model.safetensors")
    w2 = load_file(run / "checkpoints" / "last" / "model.safetensors")
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-4, worst
    l1 = [json.loads(x)["loss"] for x in (single.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert l1[0] == pytest.approx(rows[0]["loss"], rel=1e-5)  # step 1: identical batch and weights


def test_global_batch_must_split_evenly():
    assert per_rank_batch(32, 8) == 4
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        per_rank_batch(8, 3)


def test_params_digest_sees_any_change():
    a = torch.nn.Linear(3, 2)
    d = params_digest(a)
    assert params_digest(a) == d and len(d) == 64
    with torch.no_grad():
        a.bias[0] += 1e-7
    assert params_digest(a) != d
