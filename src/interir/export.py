"""Export a restoration model to ONNX (dynamic batch, height and width) or TorchScript.

Two things in the eager model do not survive export with symbolic shapes, so both exporters run on
an *export form* of the model (:func:`prepare_for_export`), a copy whose outputs match the eager
model to float rounding (checked by :func:`verify_export` and the tests):

1. **Padding.** InterIR pads its input to a multiple of its down-sampling factor with a Python
   branch on the size (``if pad_h or pad_w``). The export wrapper :class:`PadCrop` always pads to
   the next multiple, with the pad amounts computed from the symbolic size, and crops the output
   back, so the model inside only ever sees multiples and its branch is constant.
2. **The explainable convolution.** Its Eq. 17 pools the mask with ``adaptive_avg_pool2d`` to
   ``k x k``, whose decomposition depends on ``H mod k`` (an ONNX graph exported at one size gives
   wrong results or out-of-range gathers at others), and its Eq. 20 grouped convolution has
   ``groups = B``, a static attribute in ONNX, so the batch could not be dynamic. The export form
   (:func:`export_friendly_conv_forward`) pools with cumulative sums at indices computed from the
   symbolic size (exact for any size), and, for depthwise convolutions (every explainable conv of
   InterIR's EPBlocks), applies the per-sample kernels as ``k x k`` shifted multiply-adds with no
   dependence on the batch size. Non-depthwise explainable convs keep the grouped form, and the
   batch is then fixed at export (``dynamic_batch`` is reported as False).

ONNX export uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``), which needs the
``onnx`` extra (``pip install "interir[onnx]"``: onnx, onnxscript, onnxruntime for checking).
TorchScript export traces the export form, with the padding and cropping as scripted functions so
they stay size-dependent.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interir.utils.files import check_writable_file

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "PadCrop",
    "adaptive_avg_pool2d_exportable",
    "export_friendly_conv_forward",
    "prepare_for_export",
    "export_onnx",
    "export_torchscript",
    "export_model",
    "verify_export",
]

EXPORT_FORMATS = ("onnx", "torchscript")


# ----------------------------------------------------------------------------------------------
# the export form


def adaptive_avg_pool2d_exportable(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, (out_h, out_w))`` written with cumulative sums and index_select.

    Bin ``i`` along an axis of length ``n`` covers ``[floor(i n / k), ceil((i + 1) n / k))``, as in
    PyTorch; the bin bounds are tensors computed from the (possibly symbolic) size, so the traced
    graph is correct for every input size. Exact for 0/1 masks (integer sums below 2^24).

    Args:
        x: ``(..., H, W)`` float tensor.
        out_h, out_w: output size.

    Returns:
        ``(..., out_h, out_w)`` tensor.
    """
    height, width = x.shape[-2], x.shape[-1]

    def bounds(n, k: int):
        i = torch.arange(k, device=x.device)
        start = torch.div(i * n, k, rounding_mode="floor")
        end = torch.div((i + 1) * n + (k - 1), k, rounding_mode="floor")
        return start, end

    start_h, end_h = bounds(height, out_h)
    start_w, end_w = bounds(width, out_w)
    cumulative = F.pad(x.cumsum(-2), (0, 0, 1, 0))
    rows = cumulative.index_select(-2, end_h) - cumulative.index_select(-2, start_h)
    cumulative = F.pad(rows.cumsum(-1), (1, 0))
    sums = cumulative.index_select(-1, end_w) - cumulative.index_select(-1, start_w)
    area = ((end_h - start_h).unsqueeze(1) * (end_w - start_w).unsqueeze(0)).to(x.dtype)
    return sums / area


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return (
        conv.groups == conv.in_channels == conv.out_channels
        and tuple(conv.stride) == (1, 1)
        and not isinstance(conv.padding, str)
    )


def export_friendly_conv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Inference forward of :class:`~interir.models.explainable_conv.ExplainableConv2d` for export.

    Same maths as the module's forward at inference (Eqs. 16-20: hard mask ``x > tau``, pooled to
    ``k x k``, ``k^2``-scaled softmax, ``W_b = W * A_b``), with the export-safe pooling of
    :func:`adaptive_avg_pool2d_exportable` and, for depthwise stride-1 convs, the per-sample
    kernels applied as a sum of ``k x k`` shifted, per-channel-scaled copies of the input (no
    grouped conv over the batch). Bound to a module instance with ``types.MethodType``.
    """
    kh, kw = self.kernel_size
    mask = (x > self.threshold.view(1, -1, 1, 1)).to(x.dtype)
    pooled = adaptive_avg_pool2d_exportable(mask, kh, kw)
    batch, channels = pooled.shape[0], pooled.shape[1]
    logits = pooled.reshape(batch, channels, kh * kw) / self.attention_temperature
    attention = (torch.softmax(logits, dim=-1) * (kh * kw)).reshape(batch, channels, kh, kw)
    if self.padding_mode != "zeros":
        x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        pad_h = pad_w = 0
    else:
        pad_h, pad_w = self.padding
    if not _is_depthwise(self):
        weights = self.per_sample_weight(attention)
        folded = x.reshape(1, batch * self.in_channels, x.shape[-2], x.shape[-1])
        folded_weight = weights.reshape(batch * self.out_channels, *weights.shape[2:])
        bias = self.bias.repeat(batch) if self.bias is not None else None
        out = F.conv2d(
            folded, folded_weight, bias, self.stride, (pad_h, pad_w), self.dilation,
            self.groups * batch,
        )
        return out.reshape(batch, self.out_channels, out.shape[-2], out.shape[-1])
    kernel = self.weight[:, 0].unsqueeze(0) * attention  # (B, C, kh, kw): W_b for depthwise
    if pad_h or pad_w:
        x = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    dh, dw = self.dilation
    out_h = x.shape[-2] - dh * (kh - 1)
    out_w = x.shape[-1] - dw * (kw - 1)
    out = None
    for i in range(kh):
        for j in range(kw):
            shifted = x[:, :, i * dh : i * dh + out_h, j * dw : j * dw + out_w]
            term = kernel[:, :, i : i + 1, j : j + 1] * shifted
            out = term if out is None else out + term
    if self.bias is not None:
        out = out + self.bias.view(1, -1, 1, 1)
    return out


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad_h = (multiple - x.shape[-2] % multiple) % multiple
    pad_w = (multiple - x.shape[-1] % multiple) % multiple
    # Always a new tensor (even for zero padding), so tracing never aliases input and output.
    return F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")


def _crop_like(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return y[:, :, : like.shape[-2], : like.shape[-1]]


_SCRIPTED: dict[str, object] = {}


def _scripted(name: str):
    """TorchScript versions of the pad/crop helpers, compiled on first use (not at import)."""
    if name not in _SCRIPTED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates jit
            _SCRIPTED["pad"] = torch.jit.script(_pad_to_multiple)
            _SCRIPTED["crop"] = torch.jit.script(_crop_like)
    return _SCRIPTED[name]


class PadCrop(nn.Module):
    """Reflect-pad the input to a multiple of ``multiple``, run ``model``, crop back.

    Matches InterIR's own padding (reflect at the bottom and right), so the output equals the
    eager model's for any ``H, W >= multiple``.

    Args:
        model: the network.
        multiple: its padding multiple (:func:`interir.inference.size_multiple`).
        scripted: do the padding and cropping in TorchScript functions (for ``torch.jit.trace``,
            which would otherwise freeze the pad amounts of the example size).
    """

    def __init__(self, model: nn.Module, multiple: int, scripted: bool = False) -> None:
        super().__init__()
        self.model = model
        self.multiple = int(multiple)
        self.scripted = scripted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multiple <= 1:
            return self.model(x)
        if self.scripted:
            return _scripted("crop")(self.model(_scripted("pad")(x, self.multiple)), x)
        height, width = x.shape[-2], x.shape[-1]
        k = self.multiple
        pad_h = (height + k - 1) // k * k - height
        pad_w = (width + k - 1) // k * k - width
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return self.model(padded)[:, :, :height, :width]


def prepare_for_export(model: nn.Module, scripted_padding: bool = False) -> tuple[nn.Module, bool]:
    """The export form of ``model``: a copy in eval mode, wrapped in :class:`PadCrop`.

    Every explainable conv of the copy gets :func:`export_friendly_conv_forward` and stops storing
    its explanation; the original model is not changed.

    Returns:
        ``(wrapped copy, dynamic_batch)``: ``dynamic_batch`` is True when every explainable conv is
        depthwise with stride 1 (then nothing in the graph depends on the batch size).
    """
    from interir.inference.restore import size_multiple
    from interir.models.explainable_conv import ExplainableConv2d

    copy_ = copy.deepcopy(model).cpu().eval()
    dynamic_batch = True
    for module in copy_.modules():
        if isinstance(module, ExplainableConv2d):
            module.store_explanation = False
            module.last_mask = None
            module.last_attention = None
            module.forward = types.MethodType(export_friendly_conv_forward, module)
            dynamic_batch &= _is_depthwise(module)
    for p in copy_.parameters():
        p.requires_grad_(False)
    return PadCrop(copy_, size_multiple(model), scripted=scripted_padding).eval(), dynamic_batch


# ----------------------------------------------------------------------------------------------
# exporters


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: the file.
        format: ``"onnx"`` or ``"torchscript"``.
        dynamic_batch: whether the batch size may differ from the example's.
        min_size: smallest height and width the exported model accepts.
        seconds: export time.
        max_abs_error: largest difference to the eager model over the checked inputs, or None if
            not checked.
        checked_shapes: the ``(B, 3, H, W)`` inputs checked.
    """

    path: Path
    format: str
    dynamic_batch: bool
    min_size: int
    seconds: float
    max_abs_error: float | None = None
    checked_shapes: list[tuple[int, int, int, int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "dynamic_batch": self.dynamic_batch,
            "dynamic_height_width": True, "min_size": self.min_size, "seconds": self.seconds,
            "max_abs_error": self.max_abs_error,
            "checked_shapes": [list(s) for s in self.checked_shapes],
        }


def _require_onnx_exporter() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}, which are not installed. "
            'Fix: pip install "interir[onnx]"'
        )


def _example_input(example_size: tuple[int, int], batch: int, min_size: int) -> torch.Tensor:
    h, w = example_size
    if h < 2 * min_size or w < 2 * min_size:
        raise ValueError(
            f"example size {h}x{w} is too small; use at least {2 * min_size}x{2 * min_size}"
        )
    return torch.rand(batch, 3, h, w)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (64, 96),
    dynamic_batch: bool | None = None,
    optimize: bool = False,
    opset_version: int | None = None,
    keep_debug_metadata: bool = False,
) -> ExportResult:
    """Export to ONNX with dynamic height and width (and batch, when the model allows it).

    Args:
        model: a restoration network (eager, any device; a copy is exported).
        path: the ``.onnx`` file to write (a ``.onnx.data`` file is added beside it for large
            weights).
        example_size: ``(H, W)`` traced; distinct values, not multiples of anything special.
        dynamic_batch: ``None`` = dynamic whenever possible (see :func:`prepare_for_export`);
            ``False`` fixes the batch at 1.
        optimize: run the onnxscript graph optimiser. It folds the shape arithmetic (interir-tiny
            with 2 stages: 9,646 -> 2,038 nodes) but takes about twice as long as the export
            itself, and onnxruntime's own load-time optimisation gave the same latency (36 ms
            at 256 x 256, one thread) either way.
        keep_debug_metadata: keep the exporter's per-node stack traces (large).
        opset_version: ONNX opset (default: the exporter's).

    Returns:
        An :class:`ExportResult`. The graph has input ``image`` ``(B, 3, H, W)`` float32 in
        [0, 1] and output ``restored`` of the same shape (not clamped, as the eager model).
    """
    _require_onnx_exporter()
    from torch.export import Dim

    from interir.inference.restore import minimum_size

    wrapped, can_batch = prepare_for_export(model)
    batch_dynamic = can_batch if dynamic_batch is None else (bool(dynamic_batch) and can_batch)
    if dynamic_batch and not can_batch:
        warnings.warn(
            "this model has non-depthwise explainable convs: the ONNX batch is fixed at 1",
            stacklevel=2,
        )
    min_size = max(minimum_size(model), wrapped.multiple)
    # Batch 2 in the example: torch.export specialises dimensions whose example size is 0 or 1.
    x = _example_input(example_size, 2 if batch_dynamic else 1, min_size)
    axes = {2: Dim("height", min=min_size, max=65536), 3: Dim("width", min=min_size, max=65536)}
    if batch_dynamic:
        axes[0] = Dim("batch", min=1, max=4096)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    # The exporter logs "torchvision is not installed. Skipping torchvision::nms" and similar.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            program = torch.onnx.export(
                wrapped, (x,), dynamo=True, dynamic_shapes={"x": axes}, input_names=["image"],
                output_names=["restored"], optimize=optimize, verbose=False, **kwargs,
            )
    finally:
        registration_log.setLevel(level)
    if not keep_debug_metadata:
        _strip_node_metadata(program)
    program.save(str(path))
    return ExportResult(path, "onnx", batch_dynamic, min_size, time.perf_counter() - start)


def _strip_node_metadata(program) -> None:
    """Drop the exporter's per-node debugging metadata (stack traces, FX names, scopes).

    For InterIR it is ~85 % of the file (interir-tiny with 2 stages: 16.6 MB -> 1.2 MB) and
    onnxruntime ignores it.
    """
    try:
        from onnx_ir.traversal import RecursiveGraphIterator
    except ImportError:  # older onnxscript stacks: keep the metadata
        return
    for node in RecursiveGraphIterator(program.model.graph):
        node.metadata_props.clear()


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (64, 96),
) -> ExportResult:
    """Export to TorchScript by tracing the export form; height, width and batch stay dynamic.

    Load it with ``torch.jit.load(path)``; input ``(B, 3, H, W)`` float32 in [0, 1] with
    ``H, W >= min_size``; output the same shape (not clamped).
    """
    from interir.inference.restore import minimum_size

    wrapped, can_batch = prepare_for_export(model, scripted_padding=True)
    min_size = max(minimum_size(model), wrapped.multiple)
    x = _example_input(example_size, 1, min_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints in the model code
        with torch.no_grad():
            traced = torch.jit.trace(wrapped, (x,), check_trace=False)
    traced.save(str(path))
    return ExportResult(path, "torchscript", can_batch, min_size, time.perf_counter() - start)


def _run_exported(path: Path, fmt: str, x: torch.Tensor, session_cache: dict) -> torch.Tensor:
    if fmt == "onnx":
        if "session" not in session_cache:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ImportError(
                    'checking an ONNX export needs onnxruntime: pip install "interir[onnx]"'
                ) from exc
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session_cache["session"] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        session = session_cache["session"]
        name = session.get_inputs()[0].name
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if "module" not in session_cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            session_cache["module"] = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return session_cache["module"](x)


def verify_export(
    result: ExportResult | str | os.PathLike,
    model: nn.Module,
    shapes: Sequence[Sequence[int]] = ((1, 3, 72, 88), (1, 3, 41, 57)),
    fmt: str | None = None,
    seed: int = 0,
) -> float:
    """Largest absolute difference between an export and the eager model on random inputs.

    Args:
        result: an :class:`ExportResult` or a path (``.onnx`` -> onnxruntime, else TorchScript).
        model: the eager model that was exported.
        shapes: ``(B, 3, H, W)`` inputs to compare on (use sizes other than the example's).
        fmt: ``"onnx"`` or ``"torchscript"`` when ``result`` is a path (default: by extension).
        seed: seed of the random inputs.

    Returns:
        The maximum absolute difference over all inputs (float32 rounding is ~1e-6).
    """
    if isinstance(result, ExportResult):
        path, fmt = result.path, result.format
    else:
        path = Path(result)
        fmt = fmt or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model).cpu().eval()
    cache: dict = {}
    worst = 0.0
    for shape in shapes:
        x = torch.rand(tuple(int(v) for v in shape), generator=generator)
        with torch.inference_mode():
            expected = model(x)
        got = _run_exported(path, fmt, x, cache)
        if got.shape != expected.shape:
            raise AssertionError(f"exported model gave shape {tuple(got.shape)} for {tuple(shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    if isinstance(result, ExportResult):
        result.max_abs_error = worst
        result.checked_shapes = [tuple(int(v) for v in s) for s in shapes]
    return worst


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    fmt: str = "onnx",
    *,
    example_size: tuple[int, int] = (64, 96),
    dynamic_batch: bool | None = None,
    optimize: bool = False,
    check: bool = True,
    check_shapes: Sequence[Sequence[int]] | None = None,
) -> ExportResult:
    """Export ``model`` as ``fmt`` and, with ``check``, compare it with the eager model.

    ONNX is checked on onnxruntime when it is installed (skipped otherwise); TorchScript always.
    The check shapes default to two sizes different from the example, with batch 2 when the batch
    is dynamic.

    Raises:
        OutputPathError: ``path`` is a folder or its folder cannot be written (checked first:
            torch's own failure names neither, e.g. ``enforce fail at inline_container.cc``).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    check_writable_file(path, "export file")
    if fmt == "onnx":
        result = export_onnx(
            model, path, example_size=example_size, dynamic_batch=dynamic_batch, optimize=optimize
        )
    else:
        result = export_torchscript(model, path, example_size=example_size)
    if check:
        if fmt == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                return result
        batch = 2 if result.dynamic_batch else 1
        h, w = example_size
        shapes = check_shapes or [
            (batch, 3, h + result.min_size + 3, w - result.min_size + 1),
            (1, 3, max(result.min_size, h // 2 + 1), w + 2 * result.min_size + 5),
        ]
        verify_export(result, model, shapes)
    return result

