"""Restore image files and folders: plan every output first, then restore them one by one.

:func:`restore_file` / :func:`restore_paths` read images with :func:`interir.utils.io.read_image`
(JPEG, 8/16-bit PNG, TIFF, grayscale, RGBA, EXIF orientation), restore them with
:func:`interir.inference.tensor.restore_tensor` and write the result with the input's size, bit
depth, grayscale-ness and alpha channel. A file that cannot be read or restored is reported with
its reason and the batch goes on; an existing output is never replaced unless ``overwrite=True``,
and an input file never, whatever the flags.

Outputs are planned in full before any image is restored (:func:`plan_outputs`): the output
folder must be writable, each output name is final (a 16-bit TIFF that must become a PNG is
renamed from its header, before the name is checked against the other outputs and the inputs), an
output format that cannot be written is refused with the fix, and so is an output blocked by a
folder of its name. A file given twice is restored once; an output folder inside a folder input
is not read as input (a second ``restore photos -r -o photos/restored`` does not restore the first
one's outputs); the temporary files that a killed run left beside the planned outputs are deleted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from interir.inference.onnx_backend import DEFAULT_BACKEND, check_backend, require_onnxruntime
from interir.inference.settings import (
    DEFAULT_CHANNELS_LAST,
    DEFAULT_PRECISION,
    check_inference_settings,
)
from interir.inference.tensor import restore_tensor
from interir.utils.device import resolve_device
from interir.utils.files import check_writable_dir, remove_stale_temps
from interir.utils.io import (
    WRITABLE_EXTENSIONS,
    ImageReadError,
    LoadedImage,
    list_images,
    read_header,
    read_image,
    write_image,
)

__all__ = [
    "OUTPUT_FORMATS",
    "OutputExistsError",
    "RestoreReport",
    "plan_outputs",
    "restore_file",
    "restore_paths",
]

#: ``output_format`` values accepted by :func:`restore_paths` (``"same"`` keeps the input's).
OUTPUT_FORMATS = ("same", "png", "jpg", "tif", "webp", "bmp")


@dataclass
class RestoreReport:
    """What :func:`restore_paths` did.

    Attributes:
        written: ``(input, output)`` pairs written.
        skipped: ``(input, output)`` pairs not written because the output already existed.
        failed: ``(input, reason)`` pairs that could not be read, restored or written.
        notes: ``(input, note)`` pairs for changes of format forced by the input (e.g. a 16-bit
            TIFF written as 16-bit PNG), inputs given twice (restored once), an output folder
            inside a folder input (its images skipped), and deleted temporary files of earlier
            interrupted writes.
        seconds: wall-clock seconds per written input.
    """

    written: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.written)} written, {len(self.skipped)} skipped (output exists; pass "
            f"--overwrite to replace), {len(self.failed)} failed"
            if self.skipped
            else f"{len(self.written)} written, {len(self.failed)} failed"
        )

    def to_dict(self) -> dict:
        return {
            "written": [[str(a), str(b)] for a, b in self.written],
            "skipped": [[str(a), str(b)] for a, b in self.skipped],
            "failed": [[str(a), r] for a, r in self.failed],
            "notes": [[str(a), n] for a, n in self.notes],
            "seconds": dict(self.seconds),
        }


def _extension_for(src: Path, output_format: str) -> str:
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    return src.suffix if output_format == "same" else "." + output_format


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for (``path`` is the output)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        self.path = Path(path)


def _output_settings(
    dst: Path, bit_depth: int, has_alpha: bool, exact_format: bool
) -> tuple[Path, int, bool, str | None]:
    """Output path, bit depth, whether to keep alpha, and a note when something had to change.

    With ``exact_format`` the extension of ``dst`` is kept (16 bits become 8 and alpha is dropped
    where the format cannot hold them); otherwise the format changes to PNG instead.
    """
    ext = dst.suffix.lower()
    holds_16 = ext == ".png"
    holds_alpha = ext in (".png", ".tif", ".tiff", ".webp")
    notes = []
    if bit_depth == 16 and not holds_16:
        if not exact_format:
            return dst.with_suffix(".png"), 16, has_alpha, (
                f"16-bit input written as 16-bit PNG ({ext} holds 8 bits only)"
            )
        bit_depth = 8
        notes.append(f"16-bit input written as 8-bit {ext} as asked")
    if has_alpha and not holds_alpha:
        if not exact_format:
            note = f"input with alpha written as PNG ({ext} has no alpha)"
            return dst.with_suffix(".png"), bit_depth, True, note
        has_alpha = False
        notes.append(f"alpha channel dropped: {ext} has none")
    return dst, bit_depth, has_alpha, "; ".join(notes) or None


def _path_key(path: Path) -> str:
    """How two paths are compared: symlinks resolved, case folded where the system folds it, the
    extension in lower case (``x.PNG`` and ``x.png`` are one file on case-insensitive disks)."""
    real = Path(os.path.realpath(path))
    return os.path.normcase(str(real.with_suffix(real.suffix.lower())))


def _strictly_inside(path: Path, folder_real: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real != folder_real and real.is_relative_to(folder_real)


def _folder_images(
    path: Path, recursive: bool, out_real: Path
) -> tuple[list[Path], str | None, str | None]:
    """The images of a folder input, less those under the output folder when it lies inside
    (the outputs of an earlier run, which must not be restored again); ``(files, failure, note)``."""
    try:
        files = list_images(path, recursive=recursive)
    except OSError as exc:
        return [], f"cannot list folder: {exc}", None
    note = None
    if _strictly_inside(out_real, Path(os.path.realpath(path))):
        outputs = [f for f in files if Path(os.path.realpath(f)).is_relative_to(out_real)]
        if outputs:
            skip = set(outputs)
            files = [f for f in files if f not in skip]
            note = (f"{len(outputs)} image(s) under the output folder {out_real} not restored: "
                    "outputs are never inputs")
    if not files and note is None:
        return [], "folder holds no images (.png, .jpg, .tif, .bmp, .webp)", None
    return files, None, note


def _expand_inputs(
    inputs: Sequence[str | os.PathLike], recursive: bool, out_dir: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(file, output path relative to the output folder)`` for every input image, failures and
    notes. A file named twice (or also found in a folder input) is restored once."""
    candidates: list[tuple[Path, Path]] = []
    failed: list[tuple[Path, str]] = []
    notes: list[tuple[Path, str]] = []
    out_real = Path(os.path.realpath(out_dir))
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files, failure, note = _folder_images(path, recursive, out_real)
            failed.extend([(path, failure)] if failure else [])
            notes.extend([(path, note)] if note else [])
            candidates.extend((f, f.relative_to(path)) for f in files)
        elif path.exists():
            candidates.append((path, Path(path.name)))
        else:
            failed.append((path, "no such file or folder"))
    unique: dict[str, tuple[Path, Path]] = {}
    for src, rel in candidates:
        key = _path_key(src)
        if key in unique:
            notes.append((src, f"given more than once (as {unique[key][0]}); restored once"))
            continue
        unique[key] = (src, rel)
    return list(unique.values()), failed, notes


def _final_output(src: Path, requested: Path, exact_format: bool) -> Path:
    """The path actually written for ``src``: ``requested``, or its ``.png`` twin when the input's
    header shows 16 bits or alpha that the requested format cannot hold (:func:`_output_settings`)."""
    if exact_format:
        return requested
    try:
        head = read_header(src)
    except ImageReadError:
        return requested  # reading it fails later, with the reason
    return _output_settings(requested, head.bit_depth, head.has_alpha, False)[0]


def _in_the_way(dst: Path) -> str | None:
    """Why ``dst`` cannot be created: a folder under its name, or a file where a folder on its
    path must be (None when nothing is in the way). Checked before any image is restored."""
    if dst.is_dir():
        return (f"a folder is in the way of its output {dst}. Fix: move or rename that folder, or "
                "restore into another folder (-o)")
    for parent in dst.parents:
        if parent.exists():
            if parent.is_dir():
                return None
            return (f"'{parent}' is a file, where the folder of its output {dst} must be. Fix: "
                    "move that file, or restore into another folder (-o)")
    return None


def _refusal(dst: Path, inputs: dict[str, Path], claimed: dict[str, Path]) -> str | None:
    """Why ``dst`` must not be written (None when it may): unwritable format, an input, or taken."""
    if dst.suffix.lower() not in WRITABLE_EXTENSIONS:
        kind = f"'{dst.suffix}'" if dst.suffix else "extension-less"
        return (f"cannot write {kind} output {dst}; pass --format png (or jpg, tif, webp, bmp; "
                "output_format= in Python)")
    blocked = _in_the_way(dst)
    if blocked is not None:
        return blocked
    key = _path_key(dst)
    if key in inputs:
        return (f"its output {dst} would replace the input file {inputs[key]}; inputs are never "
                "replaced, whatever --overwrite says. Fix: restore into another folder (-o)")
    if key in claimed:
        return (f"its output {dst} would also be written from {claimed[key]}; rename one of them "
                "or restore them into separate folders")
    return None


def _plan(
    inputs: Sequence[str | os.PathLike], out_dir: Path, output_format: str, recursive: bool
) -> tuple[list[tuple[Path, Path, Path]], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(input, requested output, final output)`` triples, failures and notes
    (:func:`plan_outputs`)."""
    candidates, failed, notes = _expand_inputs(inputs, recursive, out_dir)
    inputs_by_key = {_path_key(src): src for src, _ in candidates}
    exact = output_format != "same"
    claimed: dict[str, Path] = {}
    planned: list[tuple[Path, Path, Path]] = []
    for src, rel in candidates:
        requested = (out_dir / rel).with_suffix(_extension_for(src, output_format))
        dst = _final_output(src, requested, exact)
        reason = _refusal(dst, inputs_by_key, claimed)
        if reason is not None:
            failed.append((src, reason))
            continue
        claimed[_path_key(dst)] = src
        planned.append((src, requested, dst))
    return planned, failed, notes


def plan_outputs(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    output_format: str = "same",
    recursive: bool = False,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files and folders into ``(input, output)`` pairs under ``out_dir``.

    A file ``a/x.jpg`` goes to ``out_dir/x.jpg``; a folder's images keep their path relative to
    the folder (sub-folders only with ``recursive``). Each output is the final name: with
    ``output_format="same"`` a 16-bit or alpha input whose format cannot hold it goes to ``.png``
    (read from its header). Returned as ``(path, reason)`` failures: missing inputs, empty
    folders, outputs in a format that cannot be written (e.g. ``.gif``), outputs that would
    replace any input file, two inputs that would write the same output, and outputs blocked by
    a folder of their name (or a file where their folder must be). A file given twice is planned
    once, and a folder input skips the images under ``out_dir`` when ``out_dir`` lies inside it
    (the outputs of an earlier run).
    """
    planned, failed, _ = _plan(list(inputs), Path(out_dir), output_format, recursive)
    return [(src, dst) for src, _, dst in planned], failed


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _write_restored(
    loaded: LoadedImage, dst: Path, bit_depth: int, keep_alpha: bool, model: nn.Module,
    quality: int, **restore_kw,
) -> None:
    """Restore a read image and write it to ``dst`` with the given depth and alpha."""
    restored = restore_tensor(model, loaded.image, **restore_kw)
    write_image(
        dst, restored, bit_depth=bit_depth, alpha=loaded.alpha if keep_alpha else None,
        grayscale=loaded.was_grayscale, quality=quality,
    )


def restore_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: nn.Module,
    *,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    quality: int = 95,
    exact_format: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    channels_last: bool = DEFAULT_CHANNELS_LAST,
    precision: str = DEFAULT_PRECISION,
    pool_window: int | None = None,
    backend: str = DEFAULT_BACKEND,
) -> tuple[Path, str | None]:
    """Restore one image file.

    The output keeps the input's size, bit depth (a 16-bit input gives a 16-bit PNG), grayscale-ness
    and alpha channel (copied unchanged). EXIF orientation is applied on reading, so the output is
    upright and carries no orientation tag.

    Args:
        src: input image.
        dst: output path; its extension picks the format. Unless ``exact_format``, it changes to
            ``.png`` when the format cannot hold the input's 16 bits or alpha.
        model, tile, overlap, device, progress, channels_last, precision, pool_window, backend:
            as in :func:`restore_tensor`.
        overwrite: replace an existing output.
        quality: JPEG quality of a ``.jpg`` output.
        exact_format: keep ``dst``'s format even if that loses 16 bits (written as 8) or alpha.
        max_pixels: largest image accepted (see :func:`interir.utils.io.read_image`).

    Returns:
        ``(path written, note)``; the note says what changed about the format, else ``None``.

    Raises:
        ImageReadError: ``src`` cannot be read, or is larger than the pixel limit.
        OutputExistsError: the output exists and ``overwrite`` is False.
        FileExistsError: the output is ``src`` itself (never replaced).
    """
    check_inference_settings(channels_last, precision, pool_window)
    check_backend(backend)
    src, dst = Path(src), Path(dst)
    loaded = read_image(src, max_pixels)
    dst, bit_depth, keep_alpha, note = _output_settings(
        dst, loaded.bit_depth, loaded.alpha is not None, exact_format
    )
    if _same_file(src, dst):
        raise FileExistsError(f"output {dst} is the input file itself; choose another output path")
    blocked = _in_the_way(dst)
    if blocked is not None:
        raise IsADirectoryError(blocked.replace("its output", "the output"))
    if dst.exists() and not overwrite:
        raise OutputExistsError(dst)
    _write_restored(loaded, dst, bit_depth, keep_alpha, model, quality, tile=tile, overlap=overlap,
                    device=device, progress=progress, channels_last=channels_last,
                    precision=precision, pool_window=pool_window, backend=backend)
    return dst, note


def restore_paths(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: nn.Module,
    *,
    overwrite: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    output_format: str = "same",
    recursive: bool = False,
    quality: int = 95,
    on_result: Callable[[str, Path, object], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
    on_start: Callable[[Path, int, int], None] | None = None,
    channels_last: bool = DEFAULT_CHANNELS_LAST,
    precision: str = DEFAULT_PRECISION,
    pool_window: int | None = None,
    backend: str = DEFAULT_BACKEND,
) -> RestoreReport:
    """Restore image files and folders into ``out_dir``; failures are reported, not raised.

    Args:
        inputs: image files and/or folders of images.
        out_dir: output folder (created when missing; checked to be writable before any work).
        model: the restoration network.
        overwrite: replace outputs that already exist (otherwise they are skipped). Input files
            are never replaced.
        tile, overlap, device: as in :func:`restore_tensor`.
        output_format: ``"same"`` keeps each input's format; or one of ``png``, ``jpg``, ``tif``,
            ``webp``, ``bmp``. 16-bit inputs always give 16-bit PNG unless a format is named
            (which writes 8-bit).
        recursive: also restore images in sub-folders of folder inputs (mirrored under
            ``out_dir``).
        quality: JPEG quality.
        on_result: called as ``on_result(status, input, detail)`` with status ``"written"``
            (detail: output path), ``"skipped"`` (output path) or ``"failed"`` (reason), as each
            input finishes.
        progress: called as ``progress(done, total)`` after each tile of the current image.
        max_pixels: largest image accepted (see :func:`interir.utils.io.read_image`).
        on_start: called as ``on_start(input, index, count)`` before each planned input is
            read (``index`` from 0; ``count`` counts the inputs refused while planning too, which
            are reported through ``on_result`` first).
        channels_last, precision, pool_window, backend: as in :func:`restore_tensor`.

    Returns:
        A :class:`RestoreReport`.

    Raises:
        ValueError: a bad ``channels_last``, ``precision``, ``pool_window`` or ``backend``
            (checked first).
        ImportError: ``backend="onnx"`` without onnxruntime (checked first).
        OutputPathError: ``out_dir`` is a file or cannot be written (checked first).
    """
    check_inference_settings(channels_last, precision, pool_window)
    check_backend(backend)
    if backend == "onnx":
        require_onnxruntime()
    check_writable_dir(out_dir)
    if device is not None:
        model.to(resolve_device(device))
    report = RestoreReport()
    planned, failed, report.notes = _plan(list(inputs), Path(out_dir), output_format, recursive)
    for stale in remove_stale_temps(dst for _, _, dst in planned):
        report.notes.append((stale, "deleted: the temporary file of an interrupted write"))

    def emit(status: str, src: Path, detail: object) -> None:
        if on_result is not None:
            on_result(status, src, detail)

    for src, reason in failed:
        report.failed.append((src, reason))
        emit("failed", src, reason)
    options = dict(overwrite=overwrite, tile=tile, overlap=overlap, quality=quality,
                   exact=output_format != "same", progress=progress, max_pixels=max_pixels,
                   channels_last=channels_last, precision=precision, pool_window=pool_window,
                   backend=backend)
    count = len(failed) + len(planned)
    for index, (src, requested, dst) in enumerate(planned, start=len(failed)):
        if on_start is not None:
            on_start(src, index, count)
        start = time.perf_counter()
        try:
            status, note = _restore_planned(src, requested, dst, model, **options)
        except ImageReadError as exc:  # the path is printed beside the reason already
            status, note = "failed", f"{exc.reason}. Fix: {exc.fix}"
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
            status, note = "failed", f"{type(exc).__name__}: {exc}"
        if status == "failed":
            report.failed.append((src, note))
            emit("failed", src, note)
            continue
        if status == "skipped":
            report.skipped.append((src, dst))
            emit("skipped", src, dst)
            continue
        report.written.append((src, dst))
        report.seconds[str(src)] = time.perf_counter() - start
        if note:
            report.notes.append((src, note))
        emit("written", src, dst)
    return report


def _restore_planned(
    src: Path, requested: Path, dst: Path, model: nn.Module, *, overwrite: bool, exact: bool,
    max_pixels: int | None, quality: int, **restore_kw,
) -> tuple[str, str | None]:
    """Restore one planned input; ``("written" | "skipped", note)``."""
    if _same_file(src, dst):  # a hard link to the input, which path comparison misses
        raise FileExistsError("its output is the input file itself; restore into another folder")
    # A quick check first, so an existing output costs no reading or restoring.
    if dst.exists() and not overwrite:
        return "skipped", None
    loaded = read_image(src, max_pixels)
    final, bit_depth, keep_alpha, note = _output_settings(
        requested, loaded.bit_depth, loaded.alpha is not None, exact
    )
    if final != dst:  # the header promised another depth or alpha than the pixels hold
        alpha = " with alpha" if loaded.alpha is not None else ""
        raise RuntimeError(
            f"decoding gave a {loaded.bit_depth}-bit image{alpha}, which needs {final.name}, not "
            f"the planned {dst.name}; nothing written. Fix: pass --format png, or re-export the file"
        )
    _write_restored(loaded, dst, bit_depth, keep_alpha, model, quality, **restore_kw)
    return "written", note
