"""How a model runs during inference: precision (fp32 / bf16 autocast) and memory format.

Three settings choose it (:func:`interir.inference.restore_tensor`'s ``channels_last``,
``precision`` and ``pool_window``; ``--channels-last``, ``--precision`` and ``--pool-window`` of
``interir restore``). Their defaults, :data:`DEFAULT_CHANNELS_LAST` and :data:`DEFAULT_PRECISION`,
were chosen by ``benchmarks/inference_settings.py``: [ours] a setting is on by default only if it
was faster and kept the PSNR against the clean photo within 0.05 dB of fp32's. The measured
speed-ups and PSNR changes are in ``benchmarks/results/inference_settings.md`` (and
``docs/inference.md``), not here. ``pool_window`` defaults to the model's own (``None``).

- :func:`check_inference_settings` refuses a setting outside its choices, naming them.
- :func:`resolve_precision` turns ``"auto"`` into ``"fp32"`` or ``"bf16"`` for a device
  (:func:`cpu_has_native_bf16`).
- ``_model_settings`` (channels-last weights, another pooling window, put back afterwards) and
  ``_autocast`` are what :mod:`interir.inference.tensor` runs the model under.
"""

from __future__ import annotations

import os

from contextlib import contextmanager, nullcontext
from typing import ContextManager

import torch
from torch import nn

__all__ = [
    "DEFAULT_CHANNELS_LAST",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "check_inference_settings",
    "cpu_has_native_bf16",
    "resolve_precision",
]

#: ``precision`` values of :func:`restore_tensor`: ``"fp32"`` (plain float32), ``"bf16"``
#: (``torch.autocast`` to bfloat16 on the CPU or a CUDA GPU; the output is float32 either way) and
#: ``"auto"`` ([ours]: bf16 on a CPU with native bfloat16 instructions, where it was measured
#: faster, fp32 everywhere else; see :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16")
#: [ours] Default of ``channels_last``, chosen by measurement (module docstring; the figures are
#: in ``benchmarks/results/inference_settings.md``): faster, with the same output to float
#: rounding.
DEFAULT_CHANNELS_LAST = True
#: [ours] Default of ``precision``, chosen by measurement (module docstring; the figures are in
#: ``benchmarks/results/inference_settings.md``): with channels-last, bf16 was faster than fp32
#: and kept the PSNR within 0.05 dB; ``"auto"`` runs it only on CPUs with native bfloat16
#: instructions, like the one measured.
DEFAULT_PRECISION = "auto"


def check_inference_settings(
    channels_last: bool, precision: str, pool_window: int | None = None
) -> None:
    """Raise a ``ValueError`` naming the valid choices when a setting is not one of them.

    Args:
        channels_last: ``True`` or ``False``.
        precision: one of :data:`PRECISIONS` (``"auto"``, ``"fp32"``, ``"bf16"``).
        pool_window: ``None`` (the model's own) or a window side in pixels >= 0 (0: whole image).
    """
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last must be True or False, got {channels_last!r}")
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if pool_window is not None and (
        isinstance(pool_window, bool) or not isinstance(pool_window, int) or pool_window < 0
    ):
        raise ValueError(
            "pool_window must be None (the model's own), 0 (pool the whole image) or a window "
            f"side in pixels > 0, got {pool_window!r}"
        )


def _is_channels_last(model: nn.Module) -> bool:
    """True when every 4-D parameter of ``model`` is stored channels-last (False without any)."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in weights
    )


@contextmanager
def _model_settings(model: nn.Module, channels_last: bool, pool_window: int | None):
    """Run the model channels-last and/or with another pooling window, then put it back.

    The conversions run outside ``inference_mode`` (also when the caller is inside it, e.g. a
    validation pass): parameters converted inside it would become inference tensors that a later
    training step could not use. A model the caller already converted to channels-last stays so. ``pool_window`` needs a model with ``set_pool_window`` (InterIR).
    """
    convert = channels_last and not _is_channels_last(model)
    previous_window = None
    if pool_window is not None:
        setter = getattr(model, "set_pool_window", None)
        if setter is None:
            raise ValueError(
                f"pool_window applies to InterIR models; {type(model).__name__} has no pooling "
                "window. Fix: leave pool_window unset (None)"
            )
        previous_window = setter(pool_window)
    try:
        if convert:
            with torch.inference_mode(False):
                model.to(memory_format=torch.channels_last)
        yield
    finally:
        if convert:
            with torch.inference_mode(False):
                model.to(memory_format=torch.contiguous_format)
        if previous_window is not None:
            model.set_pool_window(previous_window)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX tiles) and torch uses them.

    Without them torch's bfloat16 CPU kernels convert in software and can be slower than float32.
    [ours] The instructions count only when torch dispatches its kernels at an AVX-512 level
    (``torch.backends.cpu.get_cpu_capability()``) and oneDNN is not limited below it
    (``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``): with ``ATEN_CPU_CAPABILITY=avx2`` torch runs
    as on an AVX2-only CPU, so ``precision="auto"`` picks float32 there too (issue 31; this is
    how ``benchmarks/cpu_paths.py --emulate-avx2`` emulates one).
    """
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - an unknown CPU counts as one without them
        return False
    if not capability.upper().startswith("AVX512"):
        return False
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        limit = os.environ.get(variable, "").strip().upper()
        if limit and limit != "ALL" and not limit.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX",
                                                              "AVX10")):
            return False
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)  # private helpers of torch.cpu (torch >= 2.3)
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - an unknown CPU counts as one without them
            continue
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision a setting means on a device: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` ([ours]) is ``"bf16"`` on a CPU with native bfloat16 instructions
    (:func:`cpu_has_native_bf16`), the kind of machine ``benchmarks/inference_settings.py``
    measured it faster on, and ``"fp32"`` elsewhere (other CPUs, GPUs: not measured, and bf16
    fails on CUDA GPUs older than Ampere). ``"fp32"`` and ``"bf16"`` are returned as they are.
    """
    if precision != "auto":
        return precision
    device = torch.device(device)
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _autocast(precision: str, device: torch.device) -> ContextManager:
    """``torch.autocast`` to bfloat16 for ``"bf16"`` (CPU and CUDA), nothing for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"precision='bf16' runs on the CPU and CUDA GPUs, not on {device.type}; "
            "use precision='fp32' (--precision fp32)"
        )
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

