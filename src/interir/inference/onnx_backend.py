"""[ours] Restore through ONNX Runtime: the ``onnx`` backend of :func:`restore_tensor` (issue 31).

On CPUs without native bfloat16 (``precision="auto"`` picks fp32 there), onnxruntime ran the
shipped model faster than PyTorch's float32 eager path (``benchmarks/results/cpu_paths.md``). This
module exports a model once per set of weights and runs its tiles on onnxruntime's CPU provider,
batch 1, float32:

- **The export** uses :func:`interir.models.layers.batch_one_export_form` (fused
  ``LayerNormalization``; each explainable conv one ``Conv`` with its computed per-image kernel),
  2.1-2.8x faster on onnxruntime than the portable form of ``interir export`` at batch 1. It is
  made the first time a model is used (1-3 minutes on one core) and cached under
  :func:`cache_dir`, keyed by a hash of the weights, the architecture and the versions
  (:func:`model_key`); later calls load the cached file.
- **Shared whole-image statistics** (:mod:`.shared_stats`). The tile graph takes every recorded
  statistic as an extra input (``stat0``, ``stat1``, ...): the statistics pass over the
  downscaled image runs in PyTorch (one tile's work), and every tile on onnxruntime gets its
  values, so a tiled restoration is the same as with the ``torch`` backend (to float rounding)
  and has no seams. An image that runs whole uses a second graph without these inputs.

Outputs agree with the PyTorch float32 model to about 1e-5 (float rounding; the tests check
5e-5 on tiny models).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import interir.models
from interir._version import __version__
from interir.inference.shared_stats import (
    SharedStatistics,
    global_layers,
    record_statistics,
    sharing_statistics,
)
from interir.models.explainable_conv import explanations_disabled
from interir.models.export_form import prepare_for_export
from interir.models.layers import batch_one_export_form
from interir.utils.onnx_program import missing_modules, strip_node_metadata

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "OnnxRunner", "cache_dir", "check_backend", "model_key",
           "onnx_runner", "require_onnxruntime"]

log = logging.getLogger(__name__)

#: ``backend`` values of :func:`interir.inference.restore_tensor`.
BACKENDS = ("torch", "onnx")
#: Default ``backend``: PyTorch. The ONNX one is an explicit choice: its first use per set of
#: weights exports the model (1-3 minutes).
DEFAULT_BACKEND = "torch"
#: Environment variable naming the cache folder (default ``~/.cache/interir``).
CACHE_ENV = "INTERIR_CACHE_DIR"
#: Version of the exported form; part of the cache key, so a change here re-exports.
FORM_VERSION = "b1-1"

_FIX = 'Fix: pip install "interir[onnx]" (onnx, onnxscript, onnxruntime), or pass --backend torch'


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` naming the choices when ``backend`` is not one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def require_onnxruntime():
    """Import and return ``onnxruntime``, or raise ``ImportError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"backend='onnx' needs onnxruntime, which is not installed. {_FIX}") \
            from exc
    return onnxruntime


def _require_exporter() -> None:
    missing = missing_modules()
    if missing:
        raise ImportError(f"backend='onnx' exports the model once, which needs "
                          f"{' and '.join(missing)}, not installed. {_FIX}")


def cache_dir() -> Path:
    """Folder of the cached exports: ``$INTERIR_CACHE_DIR/onnx``, else
    ``$XDG_CACHE_HOME/interir/onnx``, else ``~/.cache/interir/onnx``."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "interir"
    return Path(root) / "onnx"


def model_key(model: nn.Module, kind: str) -> str:
    """Hex digest naming ``model``'s export of ``kind`` (``"plain"`` or ``"stats"``).

    It hashes the class, the configuration, every parameter and buffer (name, dtype, shape,
    values), the switches that change the computation without weights (pooling window,
    modulation), the export form, the source of :mod:`interir.models`, and the interir, torch
    and onnxruntime versions: other weights, other model code or an upgrade get a new export.
    """
    digest = hashlib.sha256()
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "none"
    # Switches that change the computation without touching the weights (pool_window,
    # modulation_disabled) are part of the key too.
    switches = [(getattr(m, "window", None), getattr(m, "modulate", None))
                for m in model.modules() if hasattr(m, "window") or hasattr(m, "modulate")]
    head = (type(model).__qualname__, repr(getattr(model, "config", None)), kind, FORM_VERSION,
            __version__, torch.__version__, ort_version, switches, _models_source_hash())
    digest.update(repr(head).encode())
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        if value.numel():
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def _models_source_hash() -> str:
    """Hash of the source files of :mod:`interir.models` (and this module), so that an export
    made by other model code (a checkout between releases) is never reused. Read once per
    process: the code a process runs does not change while it runs."""
    digest = hashlib.sha256()
    folder = Path(interir.models.__file__).parent
    for path in sorted([*folder.rglob("*.py"), Path(__file__)]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _layout(model: nn.Module, multiple: int, min_size: int) -> list[int]:
    """How many times each of :func:`global_layers` is called in one forward pass (its order)."""
    side = max(2 * multiple, 2 * min_size, 16)
    with torch.inference_mode(), explanations_disabled(model):
        recorded = record_statistics(model, model, torch.rand(1, 3, side, side))
    return [len(recorded[key]) for key in global_layers(model)]


class _WithStatistics(nn.Module):
    """``forward(image, stats)``: the model with its global layers returning the tensors of the
    list ``stats`` in order."""

    def __init__(self, model: nn.Module, counts: list[int]) -> None:
        super().__init__()
        self.model = model
        self.counts = counts

    def forward(self, image: torch.Tensor, stats: list[torch.Tensor]) -> torch.Tensor:
        values = iter(stats)
        statistics: SharedStatistics = {
            key: [next(values) for _ in range(count)]
            for key, count in zip(global_layers(self.model), self.counts)
        }
        with sharing_statistics(statistics):
            return self.model(image)


def _export(model: nn.Module, path: Path, kind: str, counts: list[int], min_size: int) -> None:
    """Export ``model`` (a copy) for batch 1 with dynamic height and width to ``path``."""
    from torch.export import Dim


    exported, _ = prepare_for_export(model)
    side = max(64, 4 * min_size)
    image = torch.rand(1, 3, side, side + 32)
    axes = {2: Dim("height", min=min_size, max=65536), 3: Dim("width", min=min_size, max=65536)}
    if kind == "stats":
        wrapper = _WithStatistics(exported, counts).eval()
        with torch.no_grad():
            recorded = record_statistics(exported, exported, image)
        stats = [v for key in global_layers(exported) for v in recorded[key]]
        args, dynamic = (image, stats), {"image": axes, "stats": [None] * len(stats)}
        names = ["image", *[f"stat{i}" for i in range(len(stats))]]
    else:
        wrapper, args, dynamic, names = exported, (image,), {"x": axes}, ["image"]
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), batch_one_export_form():
            warnings.filterwarnings("ignore", category=FutureWarning)
            # The statistics are a list input; the exporter cannot name its axes (none are dynamic).
            warnings.filterwarnings("ignore", message=".*different number of inputs")
            program = torch.onnx.export(
                wrapper, args, dynamo=True, dynamic_shapes=dynamic, input_names=names,
                output_names=["restored"], verbose=False,
            )
    finally:
        registration_log.setLevel(level)
    strip_node_metadata(program)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saved beside, then renamed: a killed export never leaves a half file under the cached name.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        program.save(str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class OnnxRunner:
    """One model's onnxruntime sessions (exported on first use, then cached on disk).

    Args:
        model: the PyTorch model (its weights are hashed for the cache; it runs the statistics
            pass of tiled images).
        multiple, min_size: the model's padding multiple and minimum size.
        notify: called with a message before a (slow) export; default: a log warning.
    """

    def __init__(self, model: nn.Module, multiple: int, min_size: int,
                 notify: Callable[[str], None] | None = None) -> None:
        # A weak reference: the runner cache must not keep a model (and its sessions) alive.
        self._model = weakref.ref(model)
        self.multiple, self.min_size = multiple, max(min_size, multiple)
        self.notify = notify or log.warning
        self._counts: list[int] | None = None
        self._sessions: dict[tuple[str, int], object] = {}
        self.key = model_key(model, "plain")

    @property
    def model(self) -> nn.Module:
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this OnnxRunner no longer exists")
        return model

    def counts(self) -> list[int]:
        if self._counts is None:
            self._counts = _layout(self.model, self.multiple, self.min_size)
        return self._counts

    def path(self, kind: str) -> Path:
        name = f"{type(self.model).__name__}-{kind}-{model_key(self.model, kind)}.onnx"
        return cache_dir() / name

    def session(self, kind: str):
        """The onnxruntime session of ``kind`` for torch's current thread count."""
        threads = torch.get_num_threads()
        cached = self._sessions.get((kind, threads))
        if cached is not None:
            return cached
        ort = require_onnxruntime()
        path = self.path(kind)
        if not path.exists():
            _require_exporter()
            self.notify(f"exporting the model to ONNX for --backend onnx, once for these weights "
                        f"(1-3 min; cached as {path})")
            _export(self.model, path, kind, self.counts(), self.min_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._sessions[(kind, threads)] = session
        return session

    def run(self, x: torch.Tensor, statistics: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``(1, 3, H, W)`` float32 CPU -> restored ``(1, 3, H, W)`` (not clamped).

        ``statistics``: the flat recorded values (:meth:`flatten`) for a tile; None for an image
        that runs whole.
        """
        kind = "plain" if statistics is None else "stats"
        session = self.session(kind)
        feed = {"image": x.detach().to("cpu", torch.float32).contiguous().numpy()}
        for i, value in enumerate(statistics or ()):
            feed[f"stat{i}"] = value.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, feed)[0])

    def flatten(self, statistics: SharedStatistics) -> list[torch.Tensor]:
        """The values of :func:`record_statistics` in the tile graph's input order."""
        flat: list[torch.Tensor] = []
        for key, count in zip(global_layers(self.model), self.counts()):
            values = statistics.get(key, [])
            if len(values) != count:
                raise RuntimeError(f"the statistics pass called {type(key[0]).__name__}."
                                   f"{key[1]} {len(values)} times, the export {count}")
            flat.extend(values)
        return flat


#: Runners by model, so repeated calls reuse their sessions; an entry goes with its model.
_RUNNERS: "weakref.WeakKeyDictionary[nn.Module, OnnxRunner]" = weakref.WeakKeyDictionary()


def onnx_runner(model: nn.Module, multiple: int, min_size: int) -> OnnxRunner:
    """The cached :class:`OnnxRunner` of ``model``; a new one when its weights or switches
    changed since (they are hashed on every call: milliseconds for the shipped model)."""
    runner = _RUNNERS.get(model)
    if runner is not None and runner.key == model_key(model, "plain"):
        return runner
    runner = OnnxRunner(model, multiple, min_size)
    _RUNNERS[model] = runner
    return runner
