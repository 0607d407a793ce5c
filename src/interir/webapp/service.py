"""What the web page does, without the page: check uploads, restore, degrade the example, explain.

Everything here is plain Python and torch (no gradio), so it is tested directly;
:mod:`interir.webapp.page` only lays out the page and turns :class:`AppError` into a message.

- :func:`read_upload` refuses a file that is not an image or has too many pixels with an
  :class:`AppError` that names the file and the limit;
- :func:`restore_uploads` restores several photos with one model and writes each result as a
  lossless PNG (the input's bit depth, grayscale-ness and alpha are kept, as ``interir restore``
  does), reporting progress per tile;
- :func:`run_example` degrades the shipped CC0 photo with a chosen combination and seed (the
  levels of ``interir demo``) and scores degraded and restored against the clean photo;
- :func:`explain_photo` runs :func:`interir.explain.explain_image` on one photo (centre-cropped,
  for speed) and writes the ``interir explain`` report.
"""

from __future__ import annotations

import atexit
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from interir.degradations import COMBINATIONS, DegradationPipeline, canonical_combination
from interir.demo import DEMO_IMAGE, DEMO_LEVELS
from interir.explain import MissingExtraError, explain_image, write_report
from interir.inference import restore_tensor
from interir.loading import load_model
from interir.metrics import psnr, ssim
from interir.pretrained import list_pretrained
from interir.utils.io import ImageReadError, LoadedImage, read_header, read_image, write_image
from interir.utils.tensors import centre_crop

__all__ = [
    "AppError",
    "AppSettings",
    "ModelCache",
    "RestoredPhoto",
    "ExampleResult",
    "ExplainResult",
    "default_models",
    "read_upload",
    "restore_uploads",
    "run_example",
    "explain_photo",
    "new_work_folder",
    "exit_cleanly_on_terminate",
    "EXAMPLE_COMBINATIONS",
    "MAX_SEED",
    "check_seed",
]

#: Largest photo restored by the page, in pixels ([ours]: a 24-MP camera photo fits; bigger ones
#: take minutes on a CPU and belong to ``interir restore``, which has no limit).
DEFAULT_MAX_PIXELS = 25_000_000
#: Most photos restored in one request ([ours]).
DEFAULT_MAX_FILES = 8
#: Side of the centre crop that is explained ([ours]: seconds on a CPU, like ``explain --crop``).
DEFAULT_EXPLAIN_CROP = 256
#: Request folders older than this are deleted when a new request starts ([ours]).
WORK_FOLDER_LIFETIME_S = 3600.0
#: Largest seed of "try an example" (torch seeds are 64-bit; [ours]: a number a person types).
MAX_SEED = 2**32 - 1
#: The combinations offered by "try an example": the seven of the MDIR set.
EXAMPLE_COMBINATIONS: tuple[str, ...] = COMBINATIONS

Progress = Callable[[float, str], None]


class AppError(ValueError):
    """A problem the page shows to its user as it is (bad upload, unknown model, ...)."""


@dataclass
class AppSettings:
    """How the page behaves.

    Attributes:
        models: model specs offered in the model menu (first = preselected): shipped names such as
            ``"default"``, checkpoint folders or ``.safetensors`` files, or registered names
            (random weights, for testing).
        device: where the models run (``auto``, ``cpu``, ``cuda``, ...).
        max_pixels: largest photo accepted, in pixels.
        max_files: most photos per request.
        tile: tile side passed to :func:`~interir.inference.restore_tensor` (``None``: automatic).
        explain_crop: side of the centre crop that is explained.
        work_dir: where request folders are made (default: a new folder in the system temp dir).
    """

    models: list[str] = field(default_factory=lambda: default_models())
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_files: int = DEFAULT_MAX_FILES
    tile: int | None = None
    explain_crop: int = DEFAULT_EXPLAIN_CROP
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("AppSettings.models is empty: name at least one model")
        if self.max_pixels < 1 or self.max_files < 1:
            raise ValueError("max_pixels and max_files must be >= 1")
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="interir-app-"))
            # Ours alone: removed when the server process ends (it held 43 MB after 64
            # requests and was never removed, issue 30). A folder the user named is kept.
            atexit.register(shutil.rmtree, self.work_dir, True)
        self.work_dir = Path(self.work_dir)


def exit_cleanly_on_terminate() -> None:
    """Make SIGTERM (``kill``, a container stopping) end the process like Ctrl+C does, so that
    exit handlers run and the temporary work folder is removed. Main thread only (Python's rule
    for signal handlers); elsewhere it does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def default_models() -> list[str]:
    """The shipped pretrained models (``["default"]`` in a normal install)."""
    return list_pretrained() or ["default"]


class ModelCache:
    """Loads each offered model once, on first use; refuses models that are not offered."""

    def __init__(self, specs: Sequence[str], device: str = "auto") -> None:
        self.specs = list(specs)
        self.device = device
        self._models: dict[str, nn.Module] = {}
        self._lock = threading.Lock()

    def get(self, spec: str | None) -> nn.Module:
        """The model for ``spec`` (one of :attr:`specs`), loaded on first use."""
        if spec not in self.specs:
            raise AppError(f"unknown model {spec!r}; pick one of: {', '.join(self.specs)}")
        with self._lock:
            if spec not in self._models:
                try:
                    self._models[spec] = load_model(spec, self.device)
                except (FileNotFoundError, ValueError, RuntimeError) as exc:
                    raise AppError(f"cannot load model {spec!r}: {exc}") from exc
            return self._models[spec]


def new_work_folder(root: Path, lifetime_s: float = WORK_FOLDER_LIFETIME_S) -> Path:
    """A fresh folder under ``root`` for one request; folders older than ``lifetime_s`` go."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.glob("request-*"):
        try:
            if now - old.stat().st_mtime > lifetime_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue  # removed by a concurrent request
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


# ----------------------------------------------------------------------------------------------
# uploads and restoration


def _pixel_count(path: Path) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels."""
    try:
        header = read_header(path)
    except ImageReadError as exc:
        raise AppError(
            f"{path.name} is not an image that can be read (PNG, JPEG, TIFF, BMP or WebP): "
            f"{exc.reason}"
        ) from exc
    return header.width, header.height


def read_upload(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an uploaded file, refusing non-images and photos over ``max_pixels``.

    Raises:
        AppError: the file is not a readable image, or it is too large; the message names the
            file, its size and the limit.
    """
    path = Path(path)
    width, height = _pixel_count(path)
    if width * height > max_pixels:
        raise AppError(
            f"{path.name} is {width}x{height} ({width * height / 1e6:.1f} MP); this page takes "
            f"at most {max_pixels / 1e6:.1f} MP. Resize it, or use `interir restore` (no limit)"
        )
    try:
        # The same limit again: a format whose size Pillow reads differently cannot slip by; the
        # data check refuses a small file that declares a large image it does not hold.
        return read_image(path, max_pixels=max_pixels)
    except ImageReadError as exc:
        raise AppError(f"{path.name}: {exc.reason}") from exc


@dataclass
class RestoredPhoto:
    """One restored upload: ``degraded`` is the input as read, ``restored`` the result (PNGs)."""

    name: str
    degraded: Path
    restored: Path
    width: int
    height: int
    seconds: float


def _unique_stem(stem: str, taken: set[str]) -> str:
    candidate, index = stem, 2
    while candidate in taken:
        candidate, index = f"{stem}-{index}", index + 1
    taken.add(candidate)
    return candidate


def _restore_one(
    model: nn.Module, loaded: LoadedImage, stem: str, out_dir: Path, tile: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[Path, Path]:
    """Restore one image; write the input and the result as PNG (input's bit depth and alpha)."""
    restored = restore_tensor(model, loaded.image, tile=tile, progress=progress)
    options = dict(bit_depth=loaded.bit_depth, alpha=loaded.alpha, grayscale=loaded.was_grayscale)
    degraded_png = write_image(out_dir / f"{stem}_input.png", loaded.image, **options)
    restored_png = write_image(out_dir / f"{stem}_restored.png", restored, **options)
    return degraded_png, restored_png


def restore_uploads(
    paths: Sequence[str | Path], model: nn.Module, out_dir: Path, settings: AppSettings,
    progress: Progress | None = None,
) -> tuple[list[RestoredPhoto], list[str]]:
    """Restore uploaded photos into ``out_dir``; a bad file is skipped with a message.

    Returns:
        ``(restored, problems)``: one :class:`RestoredPhoto` per good file, in upload order, and
        one message per skipped file.

    Raises:
        AppError: no file, too many files, or no file could be restored.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise AppError("upload one or more photos first")
    if len(paths) > settings.max_files:
        raise AppError(f"{len(paths)} files uploaded; this page takes at most {settings.max_files}")
    done, problems, taken = [], [], set()
    for index, path in enumerate(paths):
        def on_tile(step: int, total: int, index: int = index, name: str = path.name) -> None:
            if progress is not None:
                progress((index + step / total) / len(paths), f"{name}: tile {step}/{total}")

        start = time.perf_counter()
        try:
            loaded = read_upload(path, settings.max_pixels)
        except AppError as exc:
            problems.append(str(exc))
            continue
        stem = _unique_stem(path.stem, taken)
        degraded, restored = _restore_one(model, loaded, stem, out_dir, settings.tile, on_tile)
        height, width = loaded.image.shape[-2:]
        done.append(RestoredPhoto(path.name, degraded, restored, width, height,
                                  time.perf_counter() - start))
    if not done:
        raise AppError("nothing was restored: " + "; ".join(problems))
    return done, problems


# ----------------------------------------------------------------------------------------------
# the example photo


@dataclass
class ExampleResult:
    """The degraded example and its restoration, with scores against the clean photo.

    ``scores`` maps ``"degraded"`` and ``"restored"`` to ``(PSNR dB, SSIM)`` (RGB, 8-bit
    quantised, no border crop: the :mod:`interir.metrics` defaults, as in ``interir demo``).
    """

    combination: str
    seed: int
    levels: dict[str, float]
    clean: Path
    degraded: Path
    restored: Path
    scores: dict[str, tuple[float, float]]


def check_seed(seed: object) -> int:
    """The example's seed as an integer in ``[0, MAX_SEED]``; a whole-valued float (what the
    page's number box sends) is accepted, anything else is an :class:`AppError`."""
    problem = f"the seed must be >= 0 and <= {MAX_SEED}, a whole number; got {seed!r}"
    if isinstance(seed, bool):
        raise AppError(problem)
    if isinstance(seed, str):
        seed = seed.strip()
        if not seed.isdigit():
            raise AppError(problem)
        seed = int(seed)
    if isinstance(seed, float):
        if not math.isfinite(seed) or not seed.is_integer():
            raise AppError(problem)
        seed = int(seed)
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise AppError(problem)
    return seed


def degrade_example(combination: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped clean photo and its degraded copy, ``(1, 3, H, W)`` each, 8-bit quantised."""
    clean = read_image(DEMO_IMAGE).image.unsqueeze(0)
    pipeline = DegradationPipeline(combinations=(combination,), levels=DEMO_LEVELS)
    degraded, _ = pipeline(clean, torch.Generator().manual_seed(seed))
    return clean, torch.round(degraded * 255) / 255  # as a degraded photo on disk would be


def run_example(
    model: nn.Module, combination: str, seed: int, out_dir: Path, tile: int | None = None,
    progress: Progress | None = None,
) -> ExampleResult:
    """Degrade the shipped CC0 photo with ``combination`` and ``seed``, restore and score it."""
    try:
        combination = canonical_combination(combination)
    except (TypeError, ValueError) as exc:
        raise AppError(str(exc)) from exc
    seed = check_seed(seed)
    clean, degraded = degrade_example(combination, seed)

    def on_tile(step: int, total: int) -> None:
        if progress is not None:
            progress(step / total, f"example: tile {step}/{total}")

    restored = restore_tensor(model, degraded, tile=tile, progress=on_tile)
    scores = {name: (float(psnr(x, clean)), float(ssim(x, clean)))
              for name, x in (("degraded", degraded), ("restored", restored))}
    files = {name: write_image(out_dir / f"example_{name}.png", x[0])
             for name, x in (("clean", clean), ("degraded", degraded), ("restored", restored))}
    levels = {k: v for k, v in DEMO_LEVELS.items() if k in combination.split("+")}
    return ExampleResult(combination, seed, levels, files["clean"], files["degraded"],
                         files["restored"], scores)


# ----------------------------------------------------------------------------------------------
# explanation


@dataclass
class ExplainResult:
    """The explanation of one photo: figures with short captions, a stage table, the report."""

    figures: list[tuple[Path, str]]
    table: str
    archive: Path
    psnr_line: str | None


#: The report's figures shown on the page, with short captions (the report has the long ones).
FIGURE_CAPTIONS = {
    "trajectory.png": "image estimate after each unfolding stage",
    "psnr.png": "PSNR of each stage against the clean photo",
    "factors.png": "degradation factors P_h, P_w after each stage",
    "updates.png": "size of each stage's multiplier, image and factor updates",
}


def _stage_table(numbers: dict) -> str:
    """A Markdown table of the per-stage numbers of :meth:`Explanation.to_dict`."""
    psnr_values = (numbers.get("psnr") or {}).get("per_stage")

    def cell(values, k: int, digits: int) -> str:
        value = values[k] if values and k < len(values) else None
        return "–" if value is None else f"{value:.{digits}f}"

    head = "| stage | PSNR (dB) | image update | P_h change | P_w change | multiplier |"
    rows = [head, "|---|---|---|---|---|---|"]
    for k in range(numbers["stages"]):
        rows.append(
            f"| {k + 1} | {cell(psnr_values, k, 2)} | {cell(numbers['image_update_rms'], k, 4)} "
            f"| {cell(numbers['p_h_relative_change'], k, 3)} "
            f"| {cell(numbers['p_w_relative_change'], k, 3)} "
            f"| {cell(numbers['multiplier_rms'], k, 4)} |"
        )
    return "\n".join(rows)


def _figures(report_dir: Path) -> list[tuple[Path, str]]:
    shown = [(report_dir / name, caption) for name, caption in FIGURE_CAPTIONS.items()]
    convs = [(p, f"explainable convolution {p.stem[5:]}: masks and attention")
             for p in sorted(report_dir.glob("conv_*.png"))]
    return [(path, caption) for path, caption in shown + convs if path.is_file()]


def explain_photo(
    model: nn.Module, degraded: Path, out_dir: Path, clean: Path | None = None,
    crop: int | None = DEFAULT_EXPLAIN_CROP, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ExplainResult:
    """Explain ``degraded`` (centre crop of side ``crop``) and write the ``interir explain`` report.

    Raises:
        AppError: ``degraded`` is not a readable image or is too large, the model has no
            unfolding trace, or matplotlib (the ``viz`` extra) is missing.
    """
    report = out_dir / "explanation"
    image = centre_crop(read_upload(degraded, max_pixels).image, crop)
    target = centre_crop(read_image(clean).image, crop) if clean is not None else None
    try:
        explanation = explain_image(model, image, target=target)
        write_report(explanation, report)
    except (TypeError, MissingExtraError) as exc:
        raise AppError(f"no explanation: {exc}") from exc
    archive = Path(shutil.make_archive(str(report), "zip", report))
    numbers = explanation.to_dict()
    line = None
    if explanation.stage_psnr is not None:
        stages = " → ".join(f"{v:.2f}" for v in explanation.stage_psnr)
        line = f"PSNR input {explanation.input_psnr:.2f} dB → {stages} dB (per stage)"
    return ExplainResult(_figures(report), _stage_table(numbers), archive, line)
