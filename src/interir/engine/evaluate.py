"""Evaluate restoration models (networks, checkpoints, classical methods) on paired data.

Datasets are folders in one of two forms, detected automatically by :func:`open_dataset`:

* a **synthetic suite** written by ``interir synth``: ``ROOT/<combination>/input/<stem>.png``,
  ``ROOT/<combination>/target/<stem>.png`` and (optionally) ``ROOT/manifest.json`` with the
  degradation levels of every image. Summary columns: one per combination (paper Table 1);
* a **paired folder** (``input/target``, ``rain/norain``, ``hazy/<scene>_<k>`` -> ``clear/<scene>``,
  read by :class:`interir.data.PairedImageDataset`). Summary column: the dataset (Tables 2-3).

Every image is read once; each model restores it, and the input and every output are scored
against the target under one :class:`~interir.metrics.MetricSettings`. The report holds one
:class:`~interir.metrics.report.ImageResult` per (model, image) and a
:class:`~interir.metrics.report.SummaryTable` with an ``Input`` row (degraded input vs target).

Public API::

    open_dataset(path, name=None) -> EvalDataset
    evaluate(models, datasets, options=None) -> EvalReport
    EvalReport.write(out_dir) -> dict[str, Path]
    check_report_folder(out_dir, overwrite=False, save_images=False) -> None
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from interir.classical import ClassicalMethod
from interir.data.paired import PairedImageDataset
from interir.data.synthetic import MANIFEST_FILE, is_suite, read_suite
from interir.inference import restore_tensor
from interir.loading import resolve_model
from interir.metrics.image import MetricSettings, psnr_ssim
from interir.metrics.report import (
    ImageResult,
    SummaryTable,
    summarize,
    write_csv,
)
from interir.utils.device import resolve_device
from interir.utils.files import atomic_write_text
from interir.utils.io import read_image, write_image

__all__ = [
    "EvalItem",
    "EvalDataset",
    "EvalOptions",
    "EvalReport",
    "open_dataset",
    "restore",
    "evaluate",
    "check_report_folder",
    "REPORT_FILES",
    "MANIFEST_FILE",
]

#: The reports :meth:`EvalReport.write` puts in its folder.
REPORT_FILES = ("per_image.csv", "summary.md", "summary.json")

log = logging.getLogger(__name__)

ModelLike = nn.Module | Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------- datasets
@dataclass
class EvalItem:
    """One degraded/clean pair.

    Attributes:
        name: image name (stem), unique within ``(dataset, combination)``.
        combination: degradation combination (synthetic suites) or ``""``.
        levels: degradation levels from the manifest, or ``None``.
        input: degraded image ``(3, H, W)`` float32 in [0, 1].
        target: clean image ``(3, H, W)`` float32 in [0, 1].
    """

    name: str
    combination: str
    levels: dict | None
    input: torch.Tensor
    target: torch.Tensor


@dataclass
class EvalDataset:
    """A folder of pairs, iterated lazily (images are read on demand).

    Attributes:
        name: label used in tables (folder name unless given).
        root: the folder.
        kind: ``"synthetic"`` (combination sub-folders), ``"paired"`` or ``"pairs"`` (in memory,
            :meth:`from_pairs`).
        combinations: combinations present (synthetic suites), in canonical order.
    """

    name: str
    root: Path
    kind: str
    combinations: list[str] = field(default_factory=list)
    _entries: list[tuple[str, str, dict | None, Path, Path]] = field(default_factory=list,
                                                                    repr=False)
    _paired: object = field(default=None, repr=False)

    @classmethod
    def from_pairs(cls, name: str, pairs: Sequence[Mapping[str, object]]) -> "EvalDataset":
        """Pairs already in memory (training's validation pairs), in their order.

        Args:
            name: label used in tables.
            pairs: ``{"name", "input" (3, H, W), "target" (3, H, W)}`` mappings, float in [0, 1].
        """
        return cls(name=name, root=Path("(in memory)"), kind="pairs", _paired=list(pairs))

    def __len__(self) -> int:
        return len(self._paired) if self._paired is not None else len(self._entries)

    def __iter__(self) -> Iterator[EvalItem]:
        if self._paired is not None:
            for i in range(len(self._paired)):
                item = self._paired[i]
                yield EvalItem(name=str(item["name"]), combination="", levels=None,
                               input=item["input"], target=item["target"])
            return
        for combination, name, levels, inp, tgt in self._entries:
            yield EvalItem(name=name, combination=combination, levels=levels,
                           input=read_image(inp).image, target=read_image(tgt).image)


def open_dataset(path: str | Path, name: str | None = None) -> EvalDataset:
    """Open a synthetic suite or a paired folder for evaluation.

    Args:
        path: the dataset folder.
        name: table label; defaults to the folder name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no pairs are found, or an input has no target.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder '{root}' does not exist; check the path")
    label = name or root.resolve().name
    if is_suite(root):
        images = read_suite(root)
        if not images:
            raise ValueError(
                f"'{root}' looks like a synthetic suite but holds no <combination>/input + "
                "<combination>/target image pairs")
        entries = [(i.combination, i.name, i.levels, i.input, i.target) for i in images]
        combos = list(dict.fromkeys(i.combination for i in images))
        return EvalDataset(name=label, root=root, kind="synthetic", combinations=combos,
                           _entries=entries)
    paired = PairedImageDataset(root)
    if len(paired) == 0:
        raise ValueError(f"no image pairs found in '{root}'")
    return EvalDataset(name=label, root=root, kind="paired", _paired=paired)


# ------------------------------------------------------------------------------------- models
def restore(model: ModelLike, image: torch.Tensor, tile: int | None = None,
            channels_last: bool = False, backend: str = "torch") -> torch.Tensor:
    """Run ``model`` on one batch ``(B, 3, H, W)`` in [0, 1]; tiled only when ``tile`` is given.

    Networks go through :func:`interir.inference.restore_tensor` (size padding, clamping); scores
    are of the whole image unless ``tile`` asks for tiles. Classical methods always see the whole
    image (DCP estimates a global airlight). Networks run in float32 whatever ``restore``'s
    precision default is, so scores do not depend on the CPU they are computed on. By default
    also in the contiguous layout, so a model being trained (validation) is never converted;
    ``channels_last`` and ``backend="onnx"`` ([ours], ``interir eval``'s fast paths, issue 31)
    compute the same float32 values in another order (outputs within ~1e-5, scores within
    0.001 dB).
    """
    if isinstance(model, nn.Module) and not isinstance(model, ClassicalMethod):
        return restore_tensor(model, image, tile=tile or 0, precision="fp32",
                              channels_last=channels_last, backend=backend)
    return model(image)


# ------------------------------------------------------------------------------------- engine
@dataclass
class EvalOptions:
    """How :func:`evaluate` runs.

    Attributes:
        settings: metric convention.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tile: tile size for large images (networks only), ``None`` = whole image.
        save_images_to: folder for the restored images (``<model>/<dataset>/[<combination>/]
            <name>.png``), ``None`` = do not save.
        limit: at most this many images per dataset and, for synthetic suites, per combination
            (quick looks), ``None`` = all.
        log_every: log progress every N images.
        title: heading of the summary table.
        autocast: a context manager factory the models run under (training's mixed precision),
            ``None`` = none.
        progress: called as ``progress(done, total, "<dataset>/[<combination>/]<name>")`` after
            each image is scored by every model; ``total`` counts the images of all datasets
            that will be scored (``limit`` applied).
        channels_last: run networks in channels-last memory (float32 either way): the same
            values to ~1e-5, faster on the CPU. False (the default, and validation's) keeps the
            contiguous reference; ``interir eval`` turns it on.
        backend: ``"torch"`` or ``"onnx"`` (:func:`interir.inference.restore_tensor`).
    """

    settings: MetricSettings = field(default_factory=MetricSettings)
    device: str = "auto"
    tile: int | None = None
    save_images_to: Path | None = None
    limit: int | None = None
    log_every: int = 10
    title: str = "Evaluation"
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    progress: Callable[[int, int, str], None] | None = None
    channels_last: bool = False
    backend: str = "torch"


def check_report_folder(out_dir: str | Path, overwrite: bool = False,
                        save_images: bool = False) -> None:
    """Refuse, before any work, a report folder whose reports (or saved images) would be replaced.

    Raises:
        FileExistsError: ``out_dir`` holds one of :data:`REPORT_FILES` (or a non-empty
            ``images/`` with ``save_images``) and ``overwrite`` is False; the message names them
            and the fix.
    """
    out = Path(out_dir)
    taken = [name for name in REPORT_FILES if (out / name).exists()]
    images = out / "images"
    if save_images and images.is_dir() and any(images.iterdir()):
        taken.append("images/")
    if taken and not overwrite:
        raise FileExistsError(
            f"--out folder '{out}' already holds {', '.join(taken)}, which this evaluation would "
            "replace. Fix: pass --overwrite to replace them, or choose another --out folder")


@dataclass
class EvalReport:
    """Per-image results and their summary table."""

    results: list[ImageResult]
    table: SummaryTable
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``per_image.csv``, ``summary.md`` and ``summary.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "csv": write_csv(self.results, out / "per_image.csv"),
            "markdown": out / "summary.md",
            "json": out / "summary.json",
        }
        atomic_write_text(paths["markdown"], self.table.to_markdown(), fsync=False)
        atomic_write_text(paths["json"], self.table.to_json(), fsync=False)
        return paths


def _safe(name: str) -> str:
    """``name`` as one folder name: no separators, never ``.`` or ``..`` (which would leave
    the images folder)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_")
    return safe if safe.strip(".") else "model"


def _scored_count(ds: EvalDataset, limit: int | None) -> int:
    """How many images of ``ds`` :func:`evaluate` scores (at most ``limit`` per combination)."""
    if limit is None:
        return len(ds)
    if ds._paired is not None or not ds._entries:
        return min(len(ds), limit)
    per_combination = Counter(entry[0] for entry in ds._entries)
    return sum(min(count, limit) for count in per_combination.values())


def _unique_names(datasets: list[EvalDataset]) -> None:
    seen: set[str] = set()
    for ds in datasets:
        base, k = ds.name, 2
        while ds.name in seen:
            ds.name = f"{base}-{k}"
            k += 1
        seen.add(ds.name)


def evaluate(
    models: Mapping[str, ModelLike] | Sequence[str],
    datasets: Sequence[str | Path | EvalDataset],
    options: EvalOptions | None = None,
) -> EvalReport:
    """Score one or more models on one or more datasets.

    Args:
        models: ``{label: model}`` (callables mapping ``(B, 3, H, W)`` in [0, 1] to the same
            shape) or spec strings for :func:`interir.loading.resolve_model`
            (``[LABEL=]SPEC``, classical methods included).
        datasets: folders (see :func:`open_dataset`) or :class:`EvalDataset` objects (opened
            folders, or pairs in memory from :meth:`EvalDataset.from_pairs`).
        options: see :class:`EvalOptions`.

    Returns:
        An :class:`EvalReport`; ``report.table`` has an ``Input`` row followed by the models.
    """
    opts = options or EvalOptions()
    device = resolve_device(opts.device)
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {}
        for spec in models:
            label, model = resolve_model(spec, device)
            if label in named:
                raise ValueError(f"two models share the label {label!r}; name them LABEL=SPEC")
            named[label] = model
    if not named:
        raise ValueError("no model to evaluate; pass at least one --model")
    for model in named.values():
        if isinstance(model, nn.Module):
            model.to(device).eval()
    opened = [d if isinstance(d, EvalDataset) else open_dataset(d) for d in datasets]
    if not opened:
        raise ValueError("no dataset to evaluate; pass at least one dataset folder")
    _unique_names(opened)

    results: list[ImageResult] = []
    seconds = {label: 0.0 for label in named}
    total, done = sum(_scored_count(d, opts.limit) for d in opened), 0
    for ds in opened:
        if opts.log_every:
            log.info("evaluating %d model(s) on %s (%s, %d images%s)", len(named), ds.name,
                     ds.kind, len(ds), "" if opts.limit is None else f", at most {opts.limit} per column")
        seen: dict[str | None, int] = {}
        for i, item in enumerate(ds):
            # Count per combination so a limited look at a suite still fills every column.
            seen[item.combination] = seen.get(item.combination, 0) + 1
            if opts.limit is not None and seen[item.combination] > opts.limit:
                continue
            if item.input.shape != item.target.shape:
                raise ValueError(
                    f"{ds.name}/{item.combination}/{item.name}: input "
                    f"{tuple(item.input.shape)} and target {tuple(item.target.shape)} differ in size; fix the dataset")
            x = item.input.unsqueeze(0).to(device)
            y = item.target.unsqueeze(0).to(device)
            in_p, in_s = psnr_ssim(x, y, opts.settings)
            for label, model in named.items():
                start = time.perf_counter()
                precision = opts.autocast() if opts.autocast else contextlib.nullcontext()
                with torch.inference_mode(), precision:
                    out = restore(model, x, tile=opts.tile, channels_last=opts.channels_last,
                                  backend=opts.backend)
                seconds[label] += time.perf_counter() - start
                if out.shape != y.shape:
                    raise ValueError(
                        f"model {label!r} returned shape {tuple(out.shape)} for an input of "
                        f"{tuple(x.shape)}; a restoration model must keep the size")
                out_p, out_s = psnr_ssim(out, y, opts.settings)
                results.append(ImageResult(
                    model=label, dataset=ds.name, combination=item.combination, name=item.name,
                    levels=item.levels, input_psnr=float(in_p[0]), input_ssim=float(in_s[0]),
                    output_psnr=float(out_p[0]), output_ssim=float(out_s[0])))
                if opts.save_images_to is not None:
                    folder = Path(opts.save_images_to) / _safe(label) / _safe(ds.name)
                    if item.combination:
                        folder = folder / _safe(item.combination)
                    write_image(folder / f"{item.name}.png", out[0].clamp(0, 1).float().cpu())
            done += 1
            if opts.progress is not None:
                where = (ds.name, item.combination, item.name)
                opts.progress(done, total, "/".join(part for part in where if part))
            if opts.log_every and (i + 1) % opts.log_every == 0:
                log.info("  %s: %d/%d images", ds.name, i + 1, len(ds))

    notes = [
        "",
        "Datasets: " + "; ".join(
            f"`{d.name}` ({d.kind}, {len(d)} images{'' if not opts.limit else f', at most {opts.limit} per column'}, "
            f"{d.root})" for d in opened) + ".",
    ]
    n_images = len({(r.dataset, r.combination, r.name) for r in results})
    notes.append("Restoration time (s per image, " + device.type + "): " + ", ".join(
        f"{k} {v / max(n_images, 1):.3f}" for k, v in seconds.items()) + ".")
    table = summarize(results, opts.settings, title=opts.title, notes=notes)
    return EvalReport(results=results, table=table, seconds=seconds)
