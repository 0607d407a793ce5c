"""Export a restoration model to ONNX (dynamic batch, height and width) or TorchScript.

The networks are traceable as they are: where the eager form would bake the example's size into
the graph, the module branches on :func:`interir.models.layers.is_exporting` (true while
``torch.jit`` traces or ``torch.onnx`` exports):

1. **Padding.** InterIR pads its input to a multiple of its down-sampling factor only when needed
   (:func:`~interir.models.layers.pad_to_multiple`); when exporting it always pads, by amounts
   computed from the symbolic size, and crops back the same way.
2. **The explainable convolution.** Its Eq. 17 pools the mask to ``k x k``; adaptive pooling's
   exported decomposition depends on ``H mod k``, so when exporting it pools with cumulative sums
   at indices computed from the size. Its Eq. 20 grouped convolution has ``groups = B``, a static
   attribute in ONNX; when exporting, a depthwise stride-1 conv (every explainable conv of
   InterIR's EPBlocks) applies its per-sample kernels as ``k x k`` shifted multiply-adds, with no
   dependence on the batch size. Other explainable convs keep the grouped form, and the batch is
   then fixed at export (``dynamic_batch`` is reported as False).

This module holds only the exporters and their verification (:func:`verify_export` compares an
export with the eager model on sizes other than the traced one).

ONNX export uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``), which needs the
``onnx`` extra (``pip install "interir[onnx]"``: onnx, onnxscript, onnxruntime for checking).
TorchScript export traces the model.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.export import Dim

from interir.models.sizing import minimum_size, size_multiple
from interir.models.export_form import prepare_for_export
from interir.utils.onnx_program import missing_modules, strip_node_metadata
from interir.engine.checkpoint import resolve_checkpoint
from interir.utils.files import OutputPathError, atomic_open, check_writable_file

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "prepare_for_export",
    "export_onnx",
    "export_torchscript",
    "export_model",
    "verify_export",
    "check_export_output",
]

EXPORT_FORMATS = ("onnx", "torchscript")


# ----------------------------------------------------------------------------------------------
# the exported copy


def _model_files(model_spec: str | os.PathLike | None) -> list[Path]:
    """The files a model spec reads: a checkpoint folder's files, or a weights file and its
    sidecar ``.json`` (nothing for a registered or shipped name)."""
    if model_spec is None or not Path(model_spec).exists():
        return []
    try:
        source = resolve_checkpoint(model_spec)
    except (FileNotFoundError, ValueError):
        return [Path(model_spec)]
    if source.is_dir():
        return [p for p in source.iterdir() if p.is_file()]
    return [source, source.with_suffix(".json"), Path(model_spec)]


def check_export_output(
    path: str | os.PathLike, overwrite: bool = False, model_spec: str | os.PathLike | None = None
) -> Path:
    """Check, before any work, that an export may be written to ``path``.

    Args:
        path: the export file.
        overwrite: allow replacing an existing file (never one the model is read from).
        model_spec: the ``--model`` spec the export is made from (a path or a name).

    Raises:
        OutputPathError: ``path`` is a folder, its folder cannot be written, it is a file of the
            exported model itself, or it exists and ``overwrite`` is False.
    """
    path = check_writable_file(path, "--output file")
    for source in _model_files(model_spec):
        if source.exists() and path.exists() and os.path.samefile(source, path):
            raise OutputPathError(
                f"--output file '{path}' is a file of the model being exported ('{model_spec}'); "
                "an export never replaces its input, whatever --overwrite says. Fix: name another "
                "file, e.g. model.onnx or model.pt")
    if path.exists() and not overwrite:
        raise OutputPathError(
            f"--output file '{path}' already exists. Fix: pass --overwrite to replace it, or name "
            "another file")
    return path


def _min_size(model: nn.Module) -> int:
    """Smallest height and width an export accepts (reflect padding needs pad < size)."""
    return max(minimum_size(model), size_multiple(model))


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
    missing = missing_modules()
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
    exported, can_batch = prepare_for_export(model)
    batch_dynamic = can_batch if dynamic_batch is None else (bool(dynamic_batch) and can_batch)
    if dynamic_batch and not can_batch:
        warnings.warn(
            "this model has non-depthwise explainable convs: the ONNX batch is fixed at 1",
            stacklevel=2,
        )
    min_size = _min_size(model)
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
                exported, (x,), dynamo=True, dynamic_shapes={"x": axes}, input_names=["image"],
                output_names=["restored"], optimize=optimize, verbose=False, **kwargs,
            )
    finally:
        registration_log.setLevel(level)
    if not keep_debug_metadata:
        strip_node_metadata(program)
    program.save(str(path))
    return ExportResult(path, "onnx", batch_dynamic, min_size, time.perf_counter() - start)


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (64, 96),
) -> ExportResult:
    """Export to TorchScript by tracing the model; height, width and batch stay dynamic.

    Load it with ``torch.jit.load(path)``; input ``(B, 3, H, W)`` float32 in [0, 1] with
    ``H, W >= min_size``; output the same shape (not clamped).
    """
    exported, can_batch = prepare_for_export(model)
    min_size = _min_size(model)
    x = _example_input(example_size, 1, min_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints in the model code
        with torch.no_grad():
            traced = torch.jit.trace(exported, (x,), check_trace=False)
    # Saved beside, then renamed: an interrupted save never leaves a half file under the name.
    with atomic_open(path) as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's pointer to torch.export
        torch.jit.save(traced, handle)
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

