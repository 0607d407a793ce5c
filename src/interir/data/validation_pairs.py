"""The fixed validation pairs of a training config (``data.val``): what the trainer scores.

:func:`build_val_pairs` turns each ``data.val`` section into in-memory degraded/clean pairs:
synthetic ones (clean images degraded once with the section's seed by
:class:`interir.data.SyntheticPairDataset`, quantised to 8 bits like saved PNGs) or the first
pairs of degraded/clean folders (:class:`interir.data.PairedImageDataset`), or held-out views
with disparity hazed with their own depth (``haze_depth: real``, [ours]). Scoring them is
:func:`interir.engine.validation.validate`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from interir.data.depth import DepthImageDataset
from interir.data.paired import PairedImageDataset
from interir.data.synthetic import SyntheticPairDataset, item_seed, quantize8
from interir.data.training import check_roots, exclusions
from interir.degradations import COMBINATIONS
from interir.utils.io import list_images, read_image
from interir.utils.tensors import centre_crop

if TYPE_CHECKING:  # annotations only: data reads a training config but never imports config
    from interir.config import TrainConfig, ValSection

__all__ = ["build_val_pairs"]


def build_val_pairs(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The fixed validation pairs of ``cfg.data.val`` (empty for ``kind: none``).

    Synthetic: pair ``k`` is the ``k``-th clean image (cyclically, sorted by path, after
    ``exclude``), centre-cropped to ``crop``, degraded with the ``k``-th combination (cyclically)
    from a generator seeded by ``(seed, combination, image name)``, both sides quantised to 8 bits
    like saved PNGs. Paired: the first ``limit`` pairs of the folders, centre-cropped. When
    ``data.val`` is a list of sections, their pairs are concatenated and each pair's ``"set"`` is
    the index of its section.

    Returns:
        ``[{"name", "set", "input" (3, h, w), "target" (3, h, w)}, ...]`` on the CPU.
    """
    pairs: list[dict[str, Any]] = []
    listed = isinstance(cfg.data.val, list)
    for index, section in enumerate(cfg.data.val if listed else [cfg.data.val]):
        if section.kind == "none":
            continue
        for pair in _val_pairs_of(section, cfg, f"data.val[{index}]" if listed else "data.val"):
            pair["set"] = index
            pairs.append(pair)
    return pairs


def _val_pairs_of(v: ValSection, cfg: TrainConfig, label: str) -> list[dict[str, Any]]:
    """The pairs of one validation section (see :func:`build_val_pairs`)."""
    check_roots(v.roots, f"{label}.roots")
    wanted = _name_filter(v)
    if v.kind == "paired":
        return _paired_pairs(v, wanted)
    if v.haze_depth == "real":
        return _real_depth_pairs(v, cfg, label, wanted)
    return _synthetic_pairs(v, cfg, label, wanted)


def _name_filter(v: ValSection) -> Callable[[str], bool]:
    """Whether a file name passes the section's ``include`` and ``exclude`` lists."""
    names = exclusions(v.exclude)
    include = exclusions(v.include) if v.include else None

    def wanted(name: str) -> bool:
        stem = Path(name).stem
        if name in names or stem in names or Path(name).name in names:
            return False
        return include is None or name in include or stem in include or Path(name).name in include

    return wanted


def _paired_pairs(v: ValSection, wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The first ``limit`` wanted pairs of the section's folders, centre-cropped."""
    pairs: list[dict[str, Any]] = []
    for root in v.roots:
        ds = PairedImageDataset(root)
        for i, name in enumerate(ds.names):
            if v.limit is not None and len(pairs) >= v.limit:
                break
            if not wanted(name):
                continue
            item = ds[i]
            pairs.append({
                "name": f"{Path(root).name}/{item['name']}",
                "input": centre_crop(item["input"], v.crop).contiguous(),
                "target": centre_crop(item["target"], v.crop).contiguous(),
            })
    return pairs


def _synthetic_pairs(v: ValSection, cfg: TrainConfig, label: str,
                     wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Clean images of the section degraded once, image ``k`` with combination ``k`` (cyclically)."""
    files = []
    for root in v.roots:
        p = Path(root)
        files.extend([p] if p.is_file() else list_images(p))
    files = [f for f in files if wanted(f.name)]
    if not files:
        raise ValueError(
            f"no validation images left in {label}.roots={v.roots} after {label}.include/exclude"
        )
    combos = v.combinations or cfg.data.combinations or list(COMBINATIONS)
    levels = v.max_levels if v.max_levels is not None else cfg.data.max_levels
    synth = SyntheticPairDataset(files, combos, seed=v.seed, max_levels=levels, quantize=True,
                                 haze_depth=v.haze_depth, haze_airlight=v.haze_airlight,
                                 rain_style=v.rain_style)
    pairs: list[dict[str, Any]] = []
    for fi, ci in _image_combination_order(len(files), len(combos), v.limit):
        f, combo = files[fi], synth.combinations[ci]
        clean = centre_crop(read_image(f).image, v.crop).contiguous()
        degraded, _ = synth.degrade(clean, combo, f.stem)
        pairs.append({"name": f"{combo}/{f.stem}", "input": degraded, "target": quantize8(clean)})
    return pairs


def _real_depth_pairs(v: ValSection, cfg: TrainConfig, label: str,
                      wanted: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Views with disparity (scenes passing include/exclude) degraded once, view ``k`` with
    combination ``k`` (cyclically), hazed with their own depth (:mod:`interir.data.depth`); the
    draws are seeded per (combination, view) as :class:`SyntheticPairDataset` seeds them."""
    views = []
    for root in v.roots:
        ds = DepthImageDataset(root)
        views += [(ds, i) for i, (view, _) in enumerate(ds.pairs) if wanted(view.parent.name)]
    if not views:
        raise ValueError(f"no views left in {label}.roots={v.roots} after {label}.include/exclude")
    combos = v.combinations or cfg.data.combinations or list(COMBINATIONS)
    levels = v.max_levels if v.max_levels is not None else cfg.data.max_levels
    synth = SyntheticPairDataset([ds.pairs[i][0] for ds, i in views[:1]], combos, seed=v.seed,
                                 max_levels=levels, haze_airlight=v.haze_airlight, rain_style=v.rain_style)
    pairs: list[dict[str, Any]] = []
    for vi, ci in _image_combination_order(len(views), len(combos), v.limit):
        (ds, i), combo = views[vi], synth.combinations[ci]
        item, name = ds[i], ds.names[i]
        clean = quantize8(centre_crop(item["image"], v.crop).contiguous())
        depth = centre_crop(item["depth"], v.crop).contiguous()
        g = torch.Generator().manual_seed(item_seed(v.seed, combo, name))
        pipe = synth._pipes[combo]
        params = pipe.sample(1, g, combination=combo)
        degraded = quantize8(pipe.apply(clean[None], params, depth[None])[0])
        pairs.append({"name": f"{combo}/{name}", "input": degraded, "target": clean})
    return pairs


def _image_combination_order(n_files: int, n_combos: int, limit: int | None) -> list[tuple[int, int]]:
    """``(image, combination)`` index pairs: ``(k mod n_files, k mod n_combos)`` for k = 0, 1, ...,
    each pair once (the image index shifts when the two cycles meet again), ``limit`` of them."""
    total = n_files * n_combos
    count = min(limit or total, total)
    order: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    k = 0
    while len(order) < count:
        fi, ci = k % n_files, k % n_combos
        if (fi, ci) in seen:  # cycles collide when lcm(#images, #combinations) < limit
            fi = (fi + k // math.lcm(n_files, n_combos)) % n_files
        k += 1
        if (fi, ci) not in seen:
            seen.add((fi, ci))
            order.append((fi, ci))
    return order
