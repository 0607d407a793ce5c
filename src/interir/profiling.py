"""Parameters, multiply-adds, latency and peak memory of any registered model (the paper's Table 8).

- :func:`count_parameters` and :func:`count_macs` are the one counting rule of the project (the
  model-speed benchmark uses them too). Multiply-adds (MACs) are counted with
  :class:`torch.utils.flop_counter.FlopCounterMode`, which sees every convolution (including the
  explainable conv's per-sample grouped conv) and every matrix product (the Kronecker operator's
  batched matmuls); ``MACs = FLOPs / 2``. Element-wise operations are not counted. FFTs are counted
  by formula (:data:`FFT_FLOP_FORMULAS`): ``2.5 N log2 N`` FLOPs for a real-to-complex or
  complex-to-real transform of ``N`` points and ``5 N log2 N`` for a complex one, per transformed
  signal. The counting runs on fake tensors (no arithmetic), so counting the paper-size model at
  2048 x 2048 takes seconds.
- :func:`profile_model` adds per-module rows (parameters, MACs, latency), the median latency over
  several runs and the peak memory, for each input size, in a :class:`ProfileReport` that renders
  as Markdown and JSON.

Peak memory on the CPU is the peak resident set size of a fresh Python process that loads the
model and runs one forward pass (``getrusage``), because a process's high-water mark cannot be
reset; it is reported both as the process total and as the increase over the resident size just
before the forward pass ("working memory"). On CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from interir.engine.checkpoint import CheckpointError, save_checkpoint
from interir.inference import restore_paths, restore_tensor
from interir.loading import load_model
from interir.models.explainable_conv import explanations_disabled
from interir.utils.device import (
    current_rss_bytes,
    module_device,
    peak_rss_bytes,
    resolve_device,
    synchronize,
)

__all__ = [
    "FFT_FLOP_FORMULAS",
    "count_parameters",
    "count_macs",
    "module_macs",
    "measure_latency",
    "measure_peak_memory",
    "ModuleRow",
    "SizeProfile",
    "ProfileReport",
    "profile_model",
    "parse_sizes",
]

aten = torch.ops.aten


# ----------------------------------------------------------------------------------------------
# counting


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _fft_flops(shape, dims, per_point: float) -> int:
    dims = [d % len(shape) for d in dims]
    n = _prod(shape[d] for d in dims)
    if n <= 1:
        return 0
    signals = _prod(shape) // n
    return int(round(signals * per_point * n * math.log2(n)))


def _fft_r2c_flop(input_shape, dim, normalization, onesided, *args, out_shape=None, **kw) -> int:
    """Real-to-complex FFT: ``2.5 N log2 N`` FLOPs per signal of ``N`` real points."""
    return _fft_flops(input_shape, dim, 2.5)


def _fft_c2r_flop(input_shape, dim, normalization, last_size, *args, out_shape=None, **kw) -> int:
    """Complex-to-real FFT: ``2.5 N log2 N`` FLOPs per signal of ``N`` real output points."""
    return _fft_flops(out_shape, dim, 2.5)


def _fft_c2c_flop(input_shape, dim, normalization, forward, *args, out_shape=None, **kw) -> int:
    """Complex FFT: ``5 N log2 N`` FLOPs per signal of ``N`` complex points."""
    return _fft_flops(input_shape, dim, 5.0)


#: Extra formulas given to ``FlopCounterMode(custom_mapping=...)``: torch counts no FFT by itself.
FFT_FLOP_FORMULAS: dict[Any, Any] = {
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _as_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 2:
        return (1, 3) + shape
    if len(shape) == 3:
        return (1,) + shape
    if len(shape) != 4:
        raise ValueError(
            f"input_shape must be (H, W), (C, H, W) or (B, C, H, W), got {input_shape}"
        )
    return shape


def _flop_counts(
    model: nn.Module, shape: tuple[int, ...], fake: bool = True
) -> dict[str, dict[Any, int]]:
    """Per-module FLOP counts of one forward pass, keyed by module path (root = "")."""
    root = type(model).__name__
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=FFT_FLOP_FORMULAS)
    device = module_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), explanations_disabled(model):
            if fake:
                with FakeTensorMode(allow_non_fake_inputs=True):
                    x = torch.empty(shape, device=device)
                    with counter:
                        model(x)
            else:
                x = torch.rand(shape, device=device)
                with counter:
                    model(x)
    finally:
        model.train(was_training)
    counts: dict[str, dict[Any, int]] = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == "Global":
            name = ""
        elif key == root:
            name = ""
        elif key.startswith(root + "."):
            name = key[len(root) + 1 :]
        else:
            name = key
        merged = counts.setdefault(name, {})
        for op, value in per_op.items():
            merged[op] = max(merged.get(op, 0), value) if name == "" else merged.get(op, 0) + value
    counts.setdefault("", {})
    return counts


def _flop_counts_safe(model: nn.Module, shape: tuple[int, ...]) -> dict[str, dict[Any, int]]:
    try:
        return _flop_counts(model, shape, fake=True)
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on fake tensors runs for real
        warnings.warn(
            f"counting on fake tensors failed ({type(exc).__name__}: {exc}); running for real",
            stacklevel=3,
        )
        return _flop_counts(model, shape, fake=False)


def module_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Multiply-adds of one forward pass per module path (``""`` is the whole model).

    Args:
        model: any module taking one ``(B, C, H, W)`` tensor.
        input_shape: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` (missing dims: B = 1, C = 3).

    Returns:
        ``{"": total, "down": ..., "stages.0": ..., "stages.0.resm": ..., ...}``: every module
        that performed a counted operation, with the MACs of its whole subtree.
    """
    counts = _flop_counts_safe(model, _as_shape(input_shape))
    return {name: sum(per_op.values()) // 2 for name, per_op in counts.items()}


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 256, 256)) -> int:
    """Multiply-adds of one forward pass: convolutions, matrix products, FFTs (by formula).

    Args:
        model: any module taking one ``(B, C, H, W)`` tensor.
        input_shape: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` (missing dims: B = 1, C = 3).

    Returns:
        ``FLOPs / 2`` as counted by ``FlopCounterMode`` plus the FFT formulas.
    """
    return module_macs(model, input_shape)[""]


# ----------------------------------------------------------------------------------------------
# timing and memory


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    runs: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
) -> list[float]:
    """Wall-clock seconds of ``runs`` forward passes (after ``warmup`` untimed ones).

    The model runs in eval mode under ``torch.inference_mode`` on ``device`` (default: where it
    is); CUDA work is synchronised before each clock read.
    """
    run_device = module_device(model) if device is None else resolve_device(device)
    model.to(run_device)
    x = torch.rand(_as_shape(input_shape), device=run_device)
    times = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), explanations_disabled(model):
            for i in range(warmup + runs):
                synchronize(run_device)
                start = time.perf_counter()
                model(x)
                synchronize(run_device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return times


def _module_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    names: Sequence[str],
    runs: int,
    device: torch.device,
) -> dict[str, float]:
    """Median seconds spent inside each named module per forward pass (hooks around forward)."""
    modules = dict(model.named_modules())
    totals: dict[str, list[float]] = {name: [] for name in names}
    current: dict[str, float] = {}
    starts: dict[str, list[float]] = {}
    handles = []

    def pre(name):
        def hook(module, args):
            synchronize(device)
            starts.setdefault(name, []).append(time.perf_counter())
        return hook

    def post(name):
        def hook(module, args, output):
            synchronize(device)
            current[name] = current.get(name, 0.0) + time.perf_counter() - starts[name].pop()
        return hook

    for name in names:
        handles.append(modules[name].register_forward_pre_hook(pre(name)))
        handles.append(modules[name].register_forward_hook(post(name)))
    x = torch.rand(_as_shape(input_shape), device=device)
    try:
        with torch.inference_mode(), explanations_disabled(model):
            for _ in range(runs):
                current.clear()
                model(x)
                for name in names:
                    totals[name].append(current.get(name, 0.0))
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(values) if values else 0.0 for name, values in totals.items()}


_WORKER_FLAG = "--interir-memory-worker"


def _memory_worker(spec: dict) -> dict:
    """Child-process side of :func:`measure_peak_memory`."""
    torch.set_num_threads(int(spec.get("threads") or torch.get_num_threads()))
    # A safetensors checkpoint: rebuilt from its name and config, nothing unpickled.
    model = load_model(spec["model_path"], "cpu", use_ema=False)
    mode = spec.get("mode", "forward")
    with torch.inference_mode(), explanations_disabled(model):
        if mode == "forward":
            x = torch.rand(tuple(spec["shape"]))
            before = current_rss_bytes()
            model(x)
        elif mode == "restore":
            x = torch.rand(tuple(spec["shape"]))
            before = current_rss_bytes()
            restore_tensor(model, x, tile=spec.get("tile"), overlap=spec.get("overlap"))
        elif mode == "restore_file":
            before = current_rss_bytes()
            report = restore_paths(
                [spec["input"]], spec["output_dir"], model, overwrite=True, tile=spec.get("tile"),
                overlap=spec.get("overlap"),
            )
            if not report.ok:
                raise RuntimeError(f"restore failed: {report.failed}")
        else:
            raise ValueError(f"unknown worker mode {mode!r}")
    peak = peak_rss_bytes()
    return {"peak_bytes": peak, "before_bytes": before, "working_bytes": max(0, peak - before)}


def measure_peak_memory(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = "cpu",
    *,
    mode: str = "forward",
    tile: int | None = None,
    overlap: int | None = None,
    input_path: str | os.PathLike | None = None,
    threads: int | None = None,
    timeout: float = 3600,
) -> dict[str, int]:
    """Peak memory of one forward pass (or one restoration) of ``model``.

    On the CPU the model is saved to a temporary safetensors checkpoint and a fresh Python process
    rebuilds it (no pickle) and runs once, reporting its peak resident set size. On CUDA the
    forward pass runs here and ``torch.cuda.max_memory_allocated`` is read.

    Args:
        model: the network; on the CPU, one built by :func:`interir.create_model` (or loaded from
            a checkpoint), whose name and config let the fresh process rebuild it.
        input_shape: ``(B, 3, H, W)`` (or ``(H, W)``) input; unused for ``mode="restore_file"``.
        device: ``"cpu"`` or a CUDA device.
        mode: ``"forward"`` (one ``model(x)``), ``"restore"`` (:func:`restore_tensor` with the
            given ``tile``/``overlap``) or ``"restore_file"`` (:func:`restore_paths` on
            ``input_path``, reading and writing included).
        threads: torch threads in the child process (default: this process's setting).

    Returns:
        ``{"peak_bytes", "before_bytes", "working_bytes"}``: the process's peak, its resident size
        before the measured call and the difference (on CUDA: peak allocated, allocated before,
        difference).
    """
    run_device = resolve_device(device)
    shape = _as_shape(input_shape) if input_shape is not None else None
    if run_device.type == "cuda":
        if mode != "forward":
            raise ValueError("CUDA memory is measured for mode='forward' only")
        model.to(run_device).eval()
        x = torch.rand(shape, device=run_device)
        torch.cuda.synchronize(run_device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(run_device)
        before = torch.cuda.memory_allocated(run_device)
        with torch.inference_mode(), explanations_disabled(model):
            model(x)
        torch.cuda.synchronize(run_device)
        peak = torch.cuda.max_memory_allocated(run_device)
        return {"peak_bytes": peak, "before_bytes": before, "working_bytes": max(0, peak - before)}
    if run_device.type != "cpu":
        raise ValueError(f"peak memory is measured on cpu or cuda, not {run_device}")
    with tempfile.TemporaryDirectory(prefix="interir-mem-") as tmp:
        model_path = Path(tmp) / "model.safetensors"
        try:
            save_checkpoint(model_path, model)  # copies the weights to the CPU itself
        except CheckpointError as exc:
            raise ValueError(
                f"cannot measure CPU memory of this model in a fresh process: {exc}"
            ) from None
        spec = {
            "model_path": str(model_path), "shape": list(shape) if shape else None, "mode": mode,
            "tile": tile, "overlap": overlap, "threads": threads or torch.get_num_threads(),
            "input": str(input_path) if input_path else None, "output_dir": str(Path(tmp) / "out"),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "interir.profiling", _WORKER_FLAG, json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"memory measurement process failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# report


@dataclass
class ModuleRow:
    """One module of the per-module table."""

    name: str
    kind: str
    params: int
    macs: int
    latency_ms: float | None = None
    level: int = 0


@dataclass
class SizeProfile:
    """Measurements at one input size."""

    height: int
    width: int
    batch: int
    macs: int
    latency_ms: float | None = None
    latency_runs_ms: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    working_memory_mb: float | None = None
    modules: list[ModuleRow] = field(default_factory=list)
    error: str | None = None

    @property
    def megapixels(self) -> float:
        return self.batch * self.height * self.width / 1e6

    @property
    def ms_per_megapixel(self) -> float | None:
        return None if self.latency_ms is None else self.latency_ms / self.megapixels


@dataclass
class ProfileReport:
    """Profile of one model at several input sizes."""

    model: str
    params: int
    device: str
    threads: int
    torch_version: str
    machine: str
    sizes: list[SizeProfile] = field(default_factory=list)
    runs: int = 0
    depth: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        for size, raw in zip(self.sizes, out["sizes"]):
            raw["ms_per_megapixel"] = size.ms_per_megapixel
            raw["gmacs"] = size.macs / 1e9
        return out

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self, module_size_index: int = 0) -> str:
        """A totals table (one row per size) and a per-module table for one size."""
        lines = [
            f"### {self.model}: {self.params / 1e6:.2f} M parameters",
            "",
            f"Device {self.device} ({self.machine}), {self.threads} thread(s), "
            f"torch {self.torch_version}; latency is the median of {self.runs} runs; MACs count "
            "convolutions and matrix products (FFTs by formula).",
            "",
            "| input | GMACs | latency (ms) | ms / MP | peak memory (MB) | working memory (MB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def num(value, fmt):
            return "–" if value is None else format(value, fmt)

        for s in self.sizes:
            lines.append(
                f"| {s.batch}x3x{s.height}x{s.width} | {s.macs / 1e9:.2f} | "
                f"{num(s.latency_ms, '.1f')} | {num(s.ms_per_megapixel, '.0f')} | "
                f"{num(s.peak_memory_mb, '.0f')} | "
                f"{num(s.working_memory_mb, '.0f')} |"
                + (f" {s.error}" if s.error else "")
            )
        if self.sizes and self.sizes[module_size_index].modules:
            s = self.sizes[module_size_index]
            lines += [
                "",
                f"Per module at {s.height}x{s.width} (depth {self.depth}; nested rows are "
                "included in their parents; module latencies come from a separate pass with "
                "timing hooks, (total) included):",
                "",
                "| module | type | params | GMACs | % MACs | latency (ms) |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for row in s.modules:
                share = 100.0 * row.macs / s.macs if s.macs else 0.0
                indent = "&nbsp;&nbsp;" * (row.level - 1) if row.level > 1 else ""
                lines.append(
                    f"| {indent}{row.name or '(total)'} | {row.kind} | {row.params:,} | "
                    f"{row.macs / 1e9:.3f} | {share:.1f} | {num(row.latency_ms, '.1f')} |"
                )
        for note in self.notes:
            lines += ["", f"Note: {note}"]
        return "\n".join(lines) + "\n"


def parse_sizes(text: str | Sequence) -> list[tuple[int, int]]:
    """``"256,512x768"`` -> ``[(256, 256), (512, 768)]`` (``N`` means ``N x N``)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    sizes = []
    for item in items:
        if isinstance(item, (tuple, list)):
            h, w = item
        else:
            item = str(item).strip().lower()
            if not item:
                continue
            parts = item.split("x")
            try:
                h = int(parts[0])
                w = h if len(parts) == 1 else int(parts[1])
                if len(parts) > 2:
                    raise ValueError(item)
            except (ValueError, IndexError):
                raise ValueError(
                    f"bad size {item!r}; use N or HxW, comma-separated, e.g. 256,512x768"
                ) from None
        if h < 1 or w < 1:
            raise ValueError(f"sizes must be positive, got {h}x{w}")
        sizes.append((int(h), int(w)))
    if not sizes:
        raise ValueError("no sizes given; e.g. --sizes 256,512,1024")
    return sizes


_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def _module_levels(model: nn.Module) -> dict[str, int]:
    """Nesting level of every called module: containers (ModuleList/Dict) do not count as a level,
    so ``stages.3`` is level 1 and ``stages.3.resm`` level 2 (``""``, the model, is level 0)."""
    modules = dict(model.named_modules())
    levels = {}
    for name, module in modules.items():
        if isinstance(module, _CONTAINERS):
            continue
        parts = name.split(".") if name else []
        prefixes = (".".join(parts[: i + 1]) for i in range(len(parts)))
        levels[name] = sum(
            1 for prefix in prefixes if not isinstance(modules.get(prefix), _CONTAINERS)
        )
    return levels


def _module_rows(model: nn.Module, macs: dict[str, int], depth: int) -> list[ModuleRow]:
    rows = []
    levels = _module_levels(model)
    for name, module in model.named_modules():
        if name not in levels or levels[name] > depth:
            continue
        params = count_parameters(module)
        if name and params == 0 and macs.get(name, 0) == 0:
            continue
        kind = type(module).__name__
        rows.append(ModuleRow(name, kind, params, macs.get(name, 0), None, levels[name]))
    return rows


def profile_model(
    model: nn.Module,
    sizes: Sequence[int | tuple[int, int]] = (256, 512, 1024),
    runs: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = "cpu",
    depth: int = 1,
    batch: int = 1,
    memory: bool = True,
    module_latency: bool = True,
    name: str | None = None,
) -> ProfileReport:
    """Parameters, multiply-adds, latency and peak memory, per module and in total.

    Args:
        model: any restoration network taking ``(B, 3, H, W)``.
        sizes: input sizes, ``N`` for ``N x N`` or ``(H, W)``.
        runs: timed runs per size (median reported); ``0`` skips timing.
        warmup: untimed runs first.
        device: where to run (``"auto"``, ``"cpu"``, ``"cuda"``).
        depth: module nesting depth of the per-module rows, not counting ModuleLists (1: the
            model's parts, e.g. ``down``, ``stages.3``, ``final_resm``; 2: also their parts, e.g.
            ``stages.3.resm``; 3: ``stages.3.resm.aux_block``).
        batch: batch size.
        memory: measure peak memory (a fresh process per size on the CPU).
        module_latency: time each per-module row with forward hooks (one extra set of ``runs``).
        name: name shown in the report (default: ``model.model_name`` or the class name).

    Returns:
        A :class:`ProfileReport`.
    """
    run_device = resolve_device(device)
    model.to(run_device).eval()
    report = ProfileReport(
        model=name or getattr(model, "model_name", None) or type(model).__name__,
        params=count_parameters(model),
        device=str(run_device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        machine=(torch.cuda.get_device_name(run_device) if run_device.type == "cuda"
                 else f"{platform.machine()} CPU, {os.cpu_count()} cores"),
        runs=runs,
        depth=depth,
    )
    for size in parse_sizes(sizes):
        h, w = size
        shape = (batch, 3, h, w)
        macs = module_macs(model, shape)
        entry = SizeProfile(height=h, width=w, batch=batch, macs=macs[""])
        entry.modules = _module_rows(model, macs, depth)
        try:
            if runs > 0:
                times = measure_latency(model, shape, runs=runs, warmup=warmup, device=run_device)
                entry.latency_runs_ms = [t * 1e3 for t in times]
                entry.latency_ms = statistics.median(entry.latency_runs_ms)
                if module_latency:
                    names = [row.name for row in entry.modules]
                    per_module = _module_latency(model, shape, names, runs, run_device)
                    for row in entry.modules:
                        row.latency_ms = per_module[row.name] * 1e3
            if memory:
                mem = measure_peak_memory(model, shape, run_device)
                entry.peak_memory_mb = mem["peak_bytes"] / 2**20
                entry.working_memory_mb = mem["working_bytes"] / 2**20
        except Exception as exc:  # noqa: BLE001 - an out-of-memory size is reported, not fatal
            entry.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        report.sizes.append(entry)
    if run_device.type == "cpu" and memory:
        report.notes.append(
            "peak memory is the peak resident set of a fresh process that loads the model and "
            "runs one forward pass (torch runtime and weights included); working memory is the "
            "increase over the resident size just before the forward pass."
        )
    return report


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == _WORKER_FLAG:
        result = _memory_worker(json.loads(argv[1]))
        print(json.dumps(result))
        return 0
    print("usage: interir profile --help (this module is the library behind it)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
