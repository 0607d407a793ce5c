"""What the trainer feeds the model: the training dataset of a config and the batch of each step.

- :func:`training_dataset` - random clean patches (``data.train_roots``), aligned patches of
  degraded/clean pairs (``data.paired_roots``, :class:`PairedPatches`), or a mix of these and of
  images with real depth (``data.depth_roots``) at configured shares
  (:class:`interir.data.mixing.MixedPatches`, [ours]).
- :func:`training_pipeline` - the on-the-fly degradation pipeline of a clean-image run.
- :class:`StreamSampler` and :class:`SeededItems` - the resumable sample stream: every draw is a
  fixed function of ``(train.seed, position)``.
- :class:`TrainingBatches` - this process's ``(inputs, target)`` of step ``s`` on the device; in a
  mix, clean rows are degraded (hazed with their own depth when they have one) and real pairs get
  ``data.paired_combinations`` on their degraded side, each row's draw kept in ``last_records``.

Exact resume rests on this module: step ``s`` reads stream positions ``[s B, (s + 1) B)`` (``B``
the global batch), each sample's crop and flips are seeded by its position, and the step's
degradations by ``(seed, "degrade", s)``, drawn for the whole global batch of which each process
keeps its slice; so 1 and N processes, and a resumed run, see the same batches.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from interir.data.depth import DepthImageDataset
from interir.data.mixing import DEPTH, PAIRED, SOURCES, MixedPatches, MixedStreamSampler
from interir.data.paired import PairedImageDataset
from interir.data.patches import CleanPatchDataset, pad_to_min_size, read_exclusion_list
from interir.degradations import COMBINATIONS, DegradationPipeline, HazeSampling, patch_depth, pseudo_depth
from interir.utils.errors import ConfigError
from interir.utils.io import read_header
from interir.utils.seed import derive_seed, seeded

if TYPE_CHECKING:  # annotations only: data reads a training config but never imports config
    from interir.config import TrainConfig

__all__ = ["StreamSampler", "SeededItems", "PairedPatches", "TrainingBatches", "training_dataset",
           "training_pipeline", "paired_pipeline", "training_shares", "is_mixed", "exclusions",
           "check_roots", "check_patch_size"]


class StreamSampler(Sampler):
    """Endless, resumable stream of ``(dataset index, sample seed)`` for one process.

    Global position ``p`` (the p-th sample the whole run draws) maps to epoch ``p // n`` and to
    ``perm_epoch[p % n]``, where ``perm_epoch`` is a permutation seeded by ``(seed, epoch)``.
    Step ``s`` uses positions ``[s * B, (s + 1) * B)``; rank ``r`` takes its ``B / N`` share.
    """

    def __init__(self, n: int, seed: int, global_batch: int, rank: int, per_rank: int,
                 start_step: int) -> None:
        self.n, self.seed, self.global_batch = n, seed, global_batch
        self.rank, self.per_rank, self.start_step = rank, per_rank, start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step, cached_epoch, perm = self.start_step, -1, []
        while True:
            base = step * self.global_batch + self.rank * self.per_rank
            for p in range(base, base + self.per_rank):
                epoch = p // self.n
                if epoch != cached_epoch:
                    g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
                    perm, cached_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
                yield perm[p % self.n], derive_seed(self.seed, "sample", p)
            step += 1


class SeededItems(Dataset):
    """Calls ``dataset[index]`` with the global RNGs seeded by the sample seed (and restored
    afterwards), so random crops and flips depend only on the sample's stream position."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]


class PairedPatches(Dataset):
    """Aligned random ``patch x patch`` crops (and flips) of degraded/clean pairs."""

    def __init__(self, datasets: list[Dataset], patch: int, augment: bool) -> None:
        self.data = ConcatDataset(datasets)
        self.patch, self.augment = patch, augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.data[index]
        x, y = pad_to_min_size(item["input"], self.patch), pad_to_min_size(item["target"], self.patch)
        h, w = x.shape[-2:]
        p = self.patch
        top = int(torch.randint(0, h - p + 1, (1,)))
        left = int(torch.randint(0, w - p + 1, (1,)))
        x, y = x[:, top : top + p, left : left + p], y[:, top : top + p, left : left + p]
        if self.augment:
            flips = torch.rand(2)
            if flips[0] < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if flips[1] < 0.5:
                x, y = x.flip(-2), y.flip(-2)
        return {"input": x.contiguous(), "target": y.contiguous()}


def exclusions(entries: list[str]) -> set[str]:
    """Names from ``exclude`` entries: a file listing names, or a name itself."""
    names: set[str] = set()
    for e in entries:
        p = Path(e)
        if p.is_file():
            names |= read_exclusion_list(p)
        elif p.suffix == ".txt" or os.sep in e:
            raise FileNotFoundError(f"exclusion list '{e}' does not exist; check data.exclude")
        else:
            names.add(p.name)
    return names


def check_roots(roots: list[str], key: str) -> None:
    """Raise ``FileNotFoundError`` naming config ``key`` for the first root that is missing."""
    for r in roots:
        if not Path(r).exists():
            raise FileNotFoundError(
                f"{key}: '{r}' does not exist (relative paths are resolved against the current "
                f"folder '{Path.cwd()}'; the shipped configs expect the repository root)"
            )


def is_mixed(cfg: TrainConfig) -> bool:
    """Whether ``cfg.data`` mixes sources (or degrades real pairs further): the mixed path."""
    d = cfg.data
    sources = sum(bool(r) for r in (d.train_roots, d.paired_roots, d.depth_roots))
    return sources > 1 or bool(d.depth_roots) or bool(d.paired_roots and d.paired_combinations)


def training_shares(cfg: TrainConfig) -> list[float]:
    """Share of each source of :data:`interir.data.mixing.SOURCES` (synthetic, paired, depth):
    the configured fractions (1 for a lone source), the rest to ``data.train_roots``."""
    d = cfg.data
    paired = (d.paired_fraction or 1.0) if d.paired_roots else 0.0
    depth = (d.depth_fraction or 1.0) if d.depth_roots else 0.0
    synthetic = max(0.0, 1.0 - paired - depth) if d.train_roots else 0.0
    return [synthetic, paired, depth]


def training_dataset(cfg: TrainConfig) -> Dataset:
    """The training samples of ``cfg.data``: clean patches, dicts of aligned paired patches, or
    (several sources) a :class:`MixedPatches`.

    Raises:
        ConfigError: ``data.patch_size`` exceeds every training image (see :func:`check_patch_size`).
    """
    d = cfg.data
    if is_mixed(cfg):
        return _mixed_dataset(cfg)
    if d.paired_roots:
        check_roots(d.paired_roots, "data.paired_roots")
        sets = [PairedImageDataset(r) for r in d.paired_roots]
        sizes = [_header_size(p.input) for s in sets for p in s.pairs]
        check_patch_size(cfg, sizes, "data.paired_roots")
        return PairedPatches(sets, d.patch_size, d.augment)
    check_roots(d.train_roots, "data.train_roots")
    exclude = exclusions(d.exclude)
    with warnings.catch_warnings():  # the "smaller than the patch" warning, when it is an error
        warnings.filterwarnings("ignore", message=".*smaller than the .*px patch")
        data = CleanPatchDataset(d.train_roots, d.patch_size, exclude=exclude or None,
                                 augment=d.augment)
    check_patch_size(cfg, data.sizes, "data.train_roots")
    if data.small:
        warnings.warn(f"{len(data.small)} training image(s) smaller than the {d.patch_size}px "
                      f"patch will be reflect-padded: {', '.join(map(str, data.small[:10]))}",
                      stacklevel=2)
    return data


def _header_size(path: Path) -> tuple[int, int]:
    header = read_header(path)
    return header.height, header.width


def check_patch_size(cfg: TrainConfig, sizes: list[tuple[int, int]], key: str) -> None:
    """Refuse a ``data.patch_size`` larger than every training image on both sides.

    Such a patch is mostly reflected padding, and its batch can take gigabytes before the model
    runs (4096 px on 96 px images: 3 GiB for 16 patches), so it is a configuration error, found
    before anything is allocated. A patch larger than some images only pads those (a warning).

    Args:
        sizes: ``(H, W)`` of each training image (from the headers).
        key: the config key of the image folders, for the message.
    """
    p = cfg.data.patch_size
    if not sizes or any(max(h, w) >= p for h, w in sizes):
        return
    h, w = max(sizes, key=lambda s: (max(s), min(s)))
    batch_gib = cfg.train.batch_size * 3 * p * p * 4 / 2**30
    raise ConfigError(
        f"data.patch_size={p} is larger than every training image in {key} (the largest is "
        f"{w} x {h} px): each patch would be mostly padding, and a batch of "
        f"{cfg.train.batch_size} would take {batch_gib:.1f} GiB before the model runs. Fix: set "
        f"data.patch_size to at most {max(h, w)} (e.g. data.patch_size={min(max(h, w), 256)})"
    )


def _mixed_dataset(cfg: TrainConfig) -> MixedPatches:
    d = cfg.data
    for roots, key in ((d.train_roots, "train_roots"), (d.paired_roots, "paired_roots"),
                       (d.depth_roots, "depth_roots")):
        check_roots(roots, f"data.{key}")
    exclude = exclusions(d.exclude)
    clean = CleanPatchDataset(d.train_roots, d.patch_size, exclude=exclude or None,
                              augment=d.augment) if d.train_roots else None
    paired = ConcatDataset([PairedImageDataset(r) for r in d.paired_roots]) if d.paired_roots else None
    depth = ConcatDataset([DepthImageDataset(r, exclude=exclude) for r in d.depth_roots]) \
        if d.depth_roots else None
    return MixedPatches(clean, paired, depth, d.patch_size, d.augment)


def training_pipeline(cfg: TrainConfig) -> DegradationPipeline:
    """The on-the-fly degradation pipeline of a synthetic-data run: combinations, level ranges,
    airlight range, rain style (``data.rain_style``), level power and clean fraction of ``cfg``."""
    return DegradationPipeline(
        cfg.data.combinations or COMBINATIONS, cfg.data.max_levels, rng_device=cfg.data.degrade_rng,
        haze_sampling=HazeSampling(airlight=tuple(cfg.data.haze_airlight)),
        rain_sampling=cfg.data.rain_style,
        level_power=cfg.data.level_power,
        clean_fraction=cfg.data.clean_fraction,
    )


def paired_pipeline(cfg: TrainConfig) -> DegradationPipeline | None:
    """What is added to a real pair's degraded image: ``data.paired_combinations`` (levels,
    airlight and level power as for the clean images), left out for a share
    ``1 - data.paired_degrade_fraction`` of the pairs; None when nothing is added."""
    d = cfg.data
    if not d.paired_combinations or d.paired_degrade_fraction == 0:
        return None
    return DegradationPipeline(
        d.paired_combinations, d.max_levels, rng_device=d.degrade_rng,
        haze_sampling=HazeSampling(airlight=tuple(d.haze_airlight)), level_power=d.level_power,
        clean_fraction=1.0 - d.paired_degrade_fraction,
    )


class TrainingBatches:
    """This process's share of each step's global batch, degraded when the data are clean images.

    Args:
        cfg: the run's configuration (``data`` and ``train.seed``/``train.batch_size``).
        device: where the batches go (and where degradations run).
        rank, world_size, per_rank: this process, the number of processes, its share of the batch.
        start_step: the first step to read (a resumed run continues the stream there).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, rank: int, world_size: int,
                 per_rank: int, start_step: int) -> None:
        self.cfg, self.device, self.rank, self.world_size = cfg, device, rank, world_size
        self.dataset = training_dataset(cfg)
        self.mixed = isinstance(self.dataset, MixedPatches)
        self.paired = bool(cfg.data.paired_roots) and not self.mixed
        self.pipeline = None if self.paired else training_pipeline(cfg)
        self.paired_pipeline = paired_pipeline(cfg) if self.mixed else None
        self.shares = training_shares(cfg)
        self.last_records: list[dict] = []
        gen_device = device if cfg.data.degrade_rng == "same" else torch.device("cpu")
        self.degrade_gen = torch.Generator(device=gen_device)
        seed, batch = cfg.train.seed, cfg.train.batch_size
        if self.mixed:
            sampler = MixedStreamSampler(self.dataset.sizes, self.shares, seed, batch, rank, per_rank,
                                         start_step)
            items = self.dataset
        else:
            sampler = StreamSampler(len(self.dataset), seed, batch, rank, per_rank, start_step)
            items = SeededItems(self.dataset)
        self.loader = DataLoader(
            items, batch_size=per_rank, sampler=sampler,
            num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )
        self.rows = list(range(rank * per_rank, (rank + 1) * per_rank))  # mine in the global batch
        self._iter: Iterator | None = None

    @property
    def kind(self) -> str:
        """``"clean"``, ``"paired"`` or ``"mixed"`` (for the log)."""
        return "mixed" if self.mixed else "paired" if self.paired else "clean"

    def describe_mix(self) -> str:
        """``"synthetic 70% (365), paired 20% (200), depth 10% (47)"`` for the log."""
        sizes = self.dataset.sizes if self.mixed else [len(self.dataset)] * 3
        return ", ".join(f"{name} {share:.0%} ({n})" for name, share, n in
                         zip(SOURCES, self.shares, sizes) if share > 0)

    def __len__(self) -> int:
        """Number of training images (or pairs)."""
        return len(self.dataset)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, target)`` of ``step`` on the device; call once per step, in order."""
        if self._iter is None:  # started on first use (workers start here)
            self._iter = iter(self.loader)
        batch = next(self._iter)
        if self.mixed:
            return self.degrade_mixed(batch, step), batch["target"].to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            inputs = batch["input"].to(self.device, non_blocking=True)
            return inputs, batch["target"].to(self.device, non_blocking=True)
        target = batch.to(self.device, non_blocking=True)
        return self.degrade(target, step), target

    @torch.no_grad()
    def degrade(self, target: torch.Tensor, step: int) -> torch.Tensor:
        """Degrade this process's clean patches of ``step``. Parameters are drawn for the whole
        global batch and each process keeps its slice, so N processes see exactly the batch a
        single process would."""
        cfg, gen = self.cfg, self.degrade_gen
        gen.manual_seed(derive_seed(cfg.train.seed, "degrade", step))
        params = self.pipeline.sample(cfg.train.batch_size, gen, self.device)
        depth = patch_depth(cfg.train.batch_size, target.shape[-2], target.shape[-1], gen,
                            cfg.data.haze_depth, clean=target, rows=self.rows)
        if self.world_size > 1:
            params = params.select(self.rows)
        return self.pipeline.apply(target, params, None if depth is None else depth.to(self.device))

    @torch.no_grad()
    def degrade_mixed(self, batch: dict, step: int) -> torch.Tensor:
        """The inputs of a mixed batch: clean rows degraded by the training pipeline (rows with
        real depth hazed with it), real pairs' degraded images given ``data.paired_combinations``
        (or left as they are). Draws are made for the whole global batch, in a fixed order:
        the clean rows' parameters, the haze depth, the pairs' parameters. ``last_records`` gets
        one dict per row: ``source`` and the parameters applied to it."""
        cfg, gen, dev = self.cfg, self.degrade_gen, self.device
        x, target = batch["input"].to(dev), batch["target"].to(dev)
        source = [int(v) for v in batch["source"]]
        b, (h, w) = cfg.train.batch_size, x.shape[-2:]
        gen.manual_seed(derive_seed(cfg.train.seed, "degrade", step))
        params = self.pipeline.sample(b, gen, dev)
        depth = patch_depth(b, h, w, gen, cfg.data.haze_depth, clean=target, rows=self.rows)
        extra = self.paired_pipeline.sample(b, gen, dev) if self.paired_pipeline else None
        if self.world_size > 1:
            params = params.select(self.rows)
            extra = extra.select(self.rows) if extra is not None else None
        real = [i for i, s in enumerate(source) if s == DEPTH]
        if real:
            if depth is None:  # the centre pseudo-depth, made explicit for the other rows
                depth = pseudo_depth(h, w).expand(len(source), 1, h, w).clone()
            depth[real] = batch["depth"][real].to(depth.dtype)
        depth = None if depth is None else depth.to(dev)
        out = x.clone()
        records = params.to_records()
        clean_rows = [i for i, s in enumerate(source) if s != PAIRED]
        if clean_rows:
            out[clean_rows] = self.pipeline.apply(
                target[clean_rows], params.select(clean_rows), _rows_of(depth, clean_rows))
        pairs = [i for i, s in enumerate(source) if s == PAIRED]
        if pairs and extra is not None:
            out[pairs] = self.paired_pipeline.apply(x[pairs], extra.select(pairs), _rows_of(depth, pairs))
            extra_records = extra.to_records()
            for i in pairs:
                records[i] = extra_records[i]
        for i, s in enumerate(source):
            if s == PAIRED and extra is None:
                records[i] = {"combination": None}
            records[i] = {"source": SOURCES[s], **records[i]}
            if s == DEPTH:
                records[i]["haze_depth"] = "real"
        self.last_records = records
        return out

    def close(self) -> None:
        """Stop the loader's worker processes."""
        self._iter = None


def _rows_of(depth: torch.Tensor | None, rows: list[int]) -> torch.Tensor | None:
    return None if depth is None else depth[rows]
