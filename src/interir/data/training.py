"""What the trainer feeds the model: the training dataset of a config and the batch of each step.

- :func:`training_dataset` - random clean patches (``data.train_roots``), or aligned patches of
  degraded/clean pairs (``data.paired_roots``, :class:`PairedPatches`).
- :func:`training_pipeline` - the on-the-fly degradation pipeline of a clean-image run.
- :class:`StreamSampler` and :class:`SeededItems` - the resumable sample stream: every draw is a
  fixed function of ``(train.seed, position)``.
- :class:`TrainingBatches` - this process's ``(inputs, target)`` of step ``s`` on the device.

Exact resume rests on this module: step ``s`` reads stream positions ``[s B, (s + 1) B)`` (``B``
the global batch), each sample's crop and flips are seeded by its position, and the step's
degradations by ``(seed, "degrade", s)``, drawn for the whole global batch of which each process
keeps its slice; so 1 and N processes, and a resumed run, see the same batches.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from interir.config import ConfigError, TrainConfig
from interir.data.paired import PairedImageDataset
from interir.data.patches import CleanPatchDataset, pad_to_min_size, read_exclusion_list
from interir.degradations import COMBINATIONS, DegradationPipeline, HazeSampling, patch_depth
from interir.utils.io import read_header
from interir.utils.seed import derive_seed, seeded

__all__ = ["StreamSampler", "SeededItems", "PairedPatches", "TrainingBatches", "training_dataset",
           "training_pipeline", "exclusions", "check_roots", "check_patch_size"]


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


def training_dataset(cfg: TrainConfig) -> Dataset:
    """The training samples of ``cfg.data``: clean patches, or dicts of aligned paired patches.

    Raises:
        ConfigError: ``data.patch_size`` exceeds every training image (see :func:`check_patch_size`).
    """
    d = cfg.data
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
        self.paired = bool(cfg.data.paired_roots)
        self.pipeline = None if self.paired else training_pipeline(cfg)
        gen_device = device if cfg.data.degrade_rng == "same" else torch.device("cpu")
        self.degrade_gen = torch.Generator(device=gen_device)
        seed, batch = cfg.train.seed, cfg.train.batch_size
        sampler = StreamSampler(len(self.dataset), seed, batch, rank, per_rank, start_step)
        self.loader = DataLoader(
            SeededItems(self.dataset), batch_size=per_rank, sampler=sampler,
            num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )
        self.rows = list(range(rank * per_rank, (rank + 1) * per_rank))  # mine in the global batch
        self._iter: Iterator | None = None

    def __len__(self) -> int:
        """Number of training images (or pairs)."""
        return len(self.dataset)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, target)`` of ``step`` on the device; call once per step, in order."""
        if self._iter is None:  # started on first use (workers start here)
            self._iter = iter(self.loader)
        batch = next(self._iter)
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

    def close(self) -> None:
        """Stop the loader's worker processes."""
        self._iter = None
