"""The training mix of several sources at configured shares ([ours]).

Three sources feed training (:data:`SOURCES`): clean photographs degraded on the fly
(``data.train_roots``), real degraded/clean pairs (``data.paired_roots``, e.g. RainTrainL) and
clean images with real depth (``data.depth_roots``, :mod:`interir.data.depth`).

- :class:`MixPattern` - which source stream position ``p`` draws from: a cycle of
  :data:`CYCLE` positions holds each source exactly ``round(share * CYCLE)`` times, spread by a
  golden-ratio sequence (any run of positions holds each source at its share to within a sample
  or two); the cycle depends on ``seed`` only, so a resumed run continues it exactly.
- :class:`MixedStreamSampler` - ``(source, index, sample seed)`` of each position: the ``c``-th
  draw of a source takes item ``perm[c mod n]`` of that source's permutation of epoch ``c // n``
  (seeded by ``(seed, source, epoch)``), so each source's items all come once per epoch.
- :class:`MixedPatches` - one aligned training patch per key: ``{"input", "target", "depth",
  "source"}`` with the same random crop and flips on every tensor of a sample.

What is done to each row afterwards (degradations, depth) lives in
:class:`interir.data.training.TrainingBatches`.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from interir.data.patches import pad_to_min_size
from interir.utils.seed import derive_seed, seeded

__all__ = ["SOURCES", "SYNTHETIC", "PAIRED", "DEPTH", "CYCLE", "MixPattern", "MixedStreamSampler",
           "MixedPatches", "aligned_patch"]

#: Source codes of a mixed batch's rows (the ``"source"`` of :class:`MixedPatches` items).
SOURCES = ("synthetic", "paired", "depth")
SYNTHETIC, PAIRED, DEPTH = range(3)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


#: Positions in one cycle of the mix: shares are kept to 1/CYCLE.
CYCLE = 1000


class MixPattern:
    """The source of every stream position, and how many draws of a source come before one.

    Args:
        shares: one share per source, summing to 1 (zeros allowed); rounded to 1/:data:`CYCLE`
            by largest remainder, so the counts of a cycle add up to :data:`CYCLE`.
        seed: the run's seed (shifts the golden-ratio sequence: two seeds mix differently).
    """

    def __init__(self, shares: Sequence[float], seed: int) -> None:
        exact = [s * CYCLE for s in shares]
        counts = [int(math.floor(e)) for e in exact]
        by_remainder = sorted(range(len(exact)), key=lambda k: counts[k] - exact[k])
        for k in by_remainder[: CYCLE - sum(counts)]:
            counts[k] += 1
        offset = derive_seed(seed, "mix") / 2.0**63
        order = sorted(range(CYCLE), key=lambda q: math.fmod((q + offset) * _GOLDEN, 1.0))
        self.cycle = [0] * CYCLE
        start = 0
        for k, n in enumerate(counts):
            for q in order[start : start + n]:
                self.cycle[q] = k
            start += n
        self.counts = counts
        self.prefix = [[0] * (CYCLE + 1) for _ in counts]  # prefix[k][i]: draws of k in cycle[:i]
        for i, k in enumerate(self.cycle):
            for j in range(len(counts)):
                self.prefix[j][i + 1] = self.prefix[j][i] + (j == k)

    def source(self, position: int) -> int:
        """The source (index into the shares) of stream position ``position``."""
        return self.cycle[position % CYCLE]

    def draws_before(self, position: int, source: int) -> int:
        """How many earlier positions draw from ``source``."""
        full, rest = divmod(position, CYCLE)
        return full * self.counts[source] + self.prefix[source][rest]


class MixedStreamSampler(Sampler):
    """Endless, resumable stream of ``(source, index, sample seed)`` for one process.

    Step ``s`` uses global positions ``[s B, (s + 1) B)``; rank ``r`` takes its ``B / N`` share.
    Position ``p`` draws from :meth:`MixPattern.source`; the ``c``-th draw of a source takes item
    ``perm[c mod n]``, ``perm`` the source's permutation of epoch ``c // n``; so every draw depends
    on ``(seed, p)`` only, and a source's items all come once per epoch.

    Args:
        sizes: number of items of each source (0 for an absent one).
        shares: share of each source (see :class:`MixPattern`).
    """

    def __init__(self, sizes: Sequence[int], shares: Sequence[float], seed: int, global_batch: int,
                 rank: int, per_rank: int, start_step: int) -> None:
        if any(s > 0 and n == 0 for n, s in zip(sizes, shares)):
            raise ValueError(f"a source with a share has no items (sizes {list(sizes)}, shares "
                             f"{list(shares)})")
        self.sizes, self.pattern, self.seed = list(sizes), MixPattern(shares, seed), seed
        self.global_batch, self.rank, self.per_rank, self.start_step = global_batch, rank, per_rank, start_step

    def key(self, p: int, caches: list[dict] | None = None) -> tuple[int, int, int]:
        """``(source, index, sample seed)`` of global position ``p`` (``caches``: one dict per
        source keeping its current epoch's permutation)."""
        k = self.pattern.source(p)
        n, c = self.sizes[k], self.pattern.draws_before(p, k)
        epoch = c // n
        cache = {} if caches is None else caches[k]
        if epoch not in cache:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", SOURCES[k], epoch))
            cache.clear()  # one epoch per source is enough: positions only move forward
            cache[epoch] = torch.randperm(n, generator=g).tolist()
        return k, cache[epoch][c % n], derive_seed(self.seed, "sample", p)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        step, caches = self.start_step, [{} for _ in self.sizes]
        while True:
            base = step * self.global_batch + self.rank * self.per_rank
            for p in range(base, base + self.per_rank):
                yield self.key(p, caches)
            step += 1


def aligned_patch(tensors: Sequence[torch.Tensor], patch: int, augment: bool) -> list[torch.Tensor]:
    """The same random ``patch x patch`` crop (and flips with ``augment``) of ``(C, H, W)``
    tensors of one size, reflect-padded first when smaller; draws from torch's global RNG."""
    padded = [pad_to_min_size(t, patch) for t in tensors]
    h, w = padded[0].shape[-2:]
    top = int(torch.randint(0, h - patch + 1, (1,)))
    left = int(torch.randint(0, w - patch + 1, (1,)))
    out = [t[:, top : top + patch, left : left + patch] for t in padded]
    if augment:
        flips = torch.rand(2)
        if flips[0] < 0.5:
            out = [t.flip(-1) for t in out]
        if flips[1] < 0.5:
            out = [t.flip(-2) for t in out]
    return [t.contiguous() for t in out]


class MixedPatches(Dataset):
    """Training patches of the three sources, keyed by ``(source, index, sample seed)``.

    Args:
        clean: patches of clean photographs (:class:`interir.data.CleanPatchDataset`) or None.
        paired: paired folders (items ``{"input", "target"}`` full size) or None.
        depth: images with depth (:class:`interir.data.depth.DepthImageDataset`) or None.
        patch: patch side.
        augment: random flips.

    Items: ``{"input", "target"}`` ``(3, P, P)`` (``input`` is the target itself for the two
    clean sources: the batch degrades it), ``"depth"`` ``(1, P, P)`` (zeros where the source has
    none), ``"source"`` (int, see :data:`SOURCES`). The global RNGs are seeded by the key's
    sample seed for the draw, so a sample depends on its stream position only.
    """

    def __init__(self, clean: Dataset | None, paired: Dataset | None, depth: Dataset | None,
                 patch: int, augment: bool) -> None:
        self.sources = [clean, paired, depth]
        self.patch, self.augment = patch, augment

    @property
    def sizes(self) -> list[int]:
        return [0 if s is None else len(s) for s in self.sources]

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor | int]:
        source, index, seed = key
        p = self.patch
        with seeded(seed):
            if source == SYNTHETIC:
                target = self.sources[SYNTHETIC][index]
                inputs, depth = target, torch.zeros(1, p, p)
            elif source == PAIRED:
                item = self.sources[PAIRED][index]
                inputs, target = aligned_patch([item["input"], item["target"]], p, self.augment)
                depth = torch.zeros(1, p, p)
            else:
                item = self.sources[DEPTH][index]
                target, depth = aligned_patch([item["image"], item["depth"]], p, self.augment)
                inputs = target
        return {"input": inputs, "target": target, "depth": depth, "source": source}
