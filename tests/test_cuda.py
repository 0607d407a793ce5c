"""CUDA paths, run by ``pytest -m cuda`` on a GPU (scripts/device_run.sh does) and skipped elsewhere:
bf16 AMP training through the trainer, channels-last, CPU/GPU agreement, batch independence,
tiled restoration falling back on a real out-of-memory error, DDP over NCCL with one process,
ONNX export of a model that lives on the GPU, and the device run's speed rows."""

from __future__ import annotations

import copy
import json
import math
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import interir
from interir.config import load_config
from interir.engine.distributed import check_replicas
from interir.engine.train import train
from interir.export import export_model, verify_export
from interir.gpurun.bench import measure_row
from interir.inference import restore_tensor
from interir.loading import load_model
from interir.losses import RestorationLoss
from interir.utils.seed import seed_everything

try:
    import onnxruntime as ort
except ImportError:  # the onnx extra is optional
    ort = None

pytestmark = pytest.mark.cuda

DATA = Path(__file__).parent / "data"
CUDA = torch.device("cuda", 0)


@pytest.fixture
def exact_fp32():
    """Plain float32 convolutions and matrix products (no TF32), so results compare tightly."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    yield
    (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.benchmark) = saved


def _active(**overrides) -> torch.nn.Module:
    """interir-tiny with its residual branches switched on, so every block changes the output."""
    model = interir.create_model("interir-tiny", **overrides)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def test_bf16_training_steps_with_degradations_drawn_on_the_gpu(tmp_path):
    base = {
        "model": {"name": "interir-tiny", "overrides": {"width": 8, "stages": 2}},
        "data": {"train_roots": [str(DATA)], "patch_size": 64, "degrade_rng": "same",
                 "val": {"kind": "synthetic", "roots": [str(DATA)], "limit": 2, "crop": 64}},
        "train": {"iterations": 6, "batch_size": 4, "amp": "bf16", "device": "cuda", "log_every": 1,
                  "val_every": 3, "ckpt_every": 0, "ema_decay": 0.9},
        "output": {"dir": str(tmp_path), "name": "amp", "tensorboard": "off"},
    }
    result = train(load_config(None, [], base=base))
    assert result.reason == "completed" and result.step == 6 and result.images_per_s > 0
    assert "amp bf16" in (result.run_dir / "train.log").read_text()
    assert json.loads((result.run_dir / "run.json").read_text())["sessions"][0]["device"] == "cuda:0"
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows if r["kind"] == "train")
    assert [r["step"] for r in rows if r["kind"] == "val"] == [3, 6]
    assert all(math.isfinite(r["psnr"]) for r in rows if r["kind"] == "val")
    seed_everything(0)  # the trainer's initialisation (train.seed 0), on the CPU
    start = interir.create_model("interir-tiny", width=8, stages=2).state_dict()
    trained = load_model(result.run_dir / "checkpoints" / "last", use_ema=False).state_dict()
    assert all(v.dtype == start[k].dtype and torch.isfinite(v).all() for k, v in trained.items())
    assert any(not torch.equal(v, start[k]) for k, v in trained.items())  # the steps moved weights


def test_gpu_forward_matches_the_cpu(exact_fp32):
    model = _active().eval()
    x = torch.rand(2, 3, 72, 88)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(CUDA)(x.to(CUDA)).cpu()
    assert (gpu - cpu).abs().max() < 1e-4


def test_channels_last_matches_and_trains_in_bf16(exact_fp32):
    model = _active().to(CUDA).eval()
    x = torch.rand(2, 3, 64, 96, device=CUDA)
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (last(x_last) - model(x)).abs().max() < 1e-4
    last.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        pred = last(x_last)
    RestorationLoss(0.1)(pred, x).backward()
    grads = [p.grad for p in last.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_batch_independence_on_the_gpu(exact_fp32):
    model = _active().to(CUDA).eval()
    x = torch.rand(4, 3, 64, 80, device=CUDA)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert (together - alone).abs().max() < 1e-5


def _tile_after_fallback(log: str) -> int:
    found = re.findall(r"retrying with (\d+) px tiles", log)
    assert found, "no out-of-memory fallback happened"
    return int(found[-1])


def test_tiled_restore_falls_back_on_a_real_out_of_memory(exact_fp32, caplog):
    model = _active(stages=2).to(CUDA).eval()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(CUDA)
    before = torch.cuda.memory_allocated(CUDA)
    with torch.inference_mode():
        model(torch.rand(1, 3, 512, 512, device=CUDA))
    tile_work = torch.cuda.max_memory_allocated(CUDA) - before
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_reserved(CUDA) + 2 * tile_work + 32 * 2**20  # a 2048 px image needs ~16x
    x = torch.rand(3, 2048, 2048)
    total = torch.cuda.get_device_properties(CUDA).total_memory
    torch.cuda.set_per_process_memory_fraction(cap / total, CUDA)
    try:
        out = restore_tensor(model, x, tile=0, overlap=32)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()
    tile = _tile_after_fallback(caplog.text)
    assert tile < 2048 and out.shape == x.shape and out.device.type == "cpu"
    assert (out - restore_tensor(model, x, tile=tile, overlap=32)).abs().max() < 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_over_nccl_with_one_process(exact_fp32):
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            device_id=CUDA)
    try:
        plain = _active().to(CUDA)
        ddp = DistributedDataParallel(copy.deepcopy(plain), device_ids=[CUDA])
        loss_fn = RestorationLoss(0.1)
        opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (plain, ddp)]
        for step in range(2):  # a parameter without gradient would fail DDP's second step
            gen = torch.Generator(device=CUDA).manual_seed(step)
            x = torch.rand(2, 3, 64, 64, device=CUDA, generator=gen)
            for net, opt in zip((plain, ddp), opts):
                opt.zero_grad()
                loss_fn(net(x), x.clamp(0.1, 0.9)).backward()
                opt.step()
        for (name, a), b in zip(plain.named_parameters(), ddp.module.parameters()):
            assert (a - b).abs().max() < 1e-5, name
        assert len(check_replicas(ddp)) == 1
        total = torch.ones(1, device=CUDA)
        dist.all_reduce(total)
        assert total.item() == 1.0
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(ort is None, reason='needs the onnx extra: pip install "interir[onnx]"')
def test_onnx_export_of_a_model_on_the_gpu(tmp_path, exact_fp32):
    model = _active(stages=2).to(CUDA).eval()
    result = export_model(model, tmp_path / "m.onnx", "onnx", check=False)
    assert next(model.parameters()).device.type == "cuda"  # exporting did not move the model
    assert verify_export(result, model, [(1, 3, 72, 88), (2, 3, 41, 57)]) < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 72, 88)
    with torch.no_grad():
        on_gpu = model(x.to(CUDA)).cpu()
    exported = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    assert (exported - on_gpu).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_speed_row_on_the_gpu(dtype):
    model = interir.create_model("interir-tiny").to(CUDA).eval()
    row = measure_row(model, 128, dtype, CUDA, runs=3, warmup=1)
    assert row["latency_ms"] > 0 and row["latency_min_ms"] <= row["latency_ms"]
    weights_mib = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    assert row["peak_mib"] > weights_mib  # weights plus the forward pass's activations
