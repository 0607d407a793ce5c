"""Phase 2a: latency and peak memory of registered models, fp32 and bf16, batch 1.

Latency is :func:`interir.profiling.measure_latency` (median of the timed runs, CUDA synchronised
around each), run under ``torch.autocast`` for bf16. Peak memory is
:func:`interir.profiling.measure_peak_memory` on CUDA (``max_memory_allocated`` of one forward
pass, weights included); on the CPU it is left out (the CPU figure needs a fresh process per
row; ``benchmarks/model_speed.py`` measures it).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable

import torch

from interir.profiling import count_macs, count_parameters, measure_latency, measure_peak_memory
from interir.registry import create_model
from interir.utils.device import empty_cache, is_out_of_memory

__all__ = ["DTYPES", "autocast_for", "speed_rows", "measure_row", "precision_flags"]

DTYPES = ("fp32", "bf16")


def autocast_for(device: torch.device, dtype: str):
    """A context that runs the model in ``dtype``: bf16 autocast, or nothing for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")


def precision_flags() -> dict[str, bool]:
    """PyTorch's TF32 switches, which decide what "fp32" means on an NVIDIA GPU."""
    return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}


def measure_row(model: torch.nn.Module, size: int, dtype: str, device: torch.device,
                runs: int, warmup: int) -> dict[str, Any]:
    """Latency (ms, median) and peak memory (MiB, CUDA only) of one forward pass at ``size``."""
    shape = (1, 3, size, size)
    with autocast_for(device, dtype):
        times = measure_latency(model, shape, runs=runs, warmup=warmup, device=device)
        peak = measure_peak_memory(model, shape, device) if device.type == "cuda" else None
    row = {"latency_ms": round(1e3 * statistics.median(times), 3),
           "latency_min_ms": round(1e3 * min(times), 3), "peak_mib": None}
    if peak is not None:
        row["peak_mib"] = round(peak["peak_bytes"] / 2**20, 1)
    return row


def _guarded(fn: Callable[[], dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """``fn()``, or ``{"error": ...}`` when it runs out of memory (the cache is then emptied)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - out of memory is a result here; others are raised
        if not is_out_of_memory(exc):
            raise
    empty_cache(device)
    return {"error": "out of memory"}


def _gmacs(model: torch.nn.Module, size: int) -> float | None:
    """Multiply-adds of one forward pass in billions, or None when they cannot be counted."""
    try:
        return round(count_macs(model, (1, 3, size, size)) / 1e9, 3)
    except Exception:  # noqa: BLE001 - a count is a bonus; the timings are the measurement
        return None


def speed_rows(names: list[str], sizes: list[int], device: torch.device, runs: int,
               deadline: float, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per model, size and dtype; rows not reached by ``deadline`` (``time.time()``)
    are marked ``"skipped": "budget"``."""
    rows = []
    warmup = 3 if device.type == "cuda" else 1
    for name in names:
        torch.manual_seed(0)
        model = create_model(name).to(device).eval()
        params = count_parameters(model)
        for size in sizes:
            gmacs = _gmacs(model, size)
            for dtype in DTYPES:
                row = {"model": name, "params": params, "size": size, "dtype": dtype, "gmacs": gmacs}
                if time.time() > deadline:
                    rows.append({**row, "skipped": "budget"})
                    continue
                row.update(_guarded(lambda: measure_row(model, size, dtype, device, runs, warmup), device))
                rows.append(row)
                say(f"bench {name} {size}px {dtype}: {row.get('latency_ms', '-')} ms, "
                    f"peak {row.get('peak_mib', '-')} MiB{'  ' + row['error'] if 'error' in row else ''}")
        del model
        empty_cache(device)
    return rows
