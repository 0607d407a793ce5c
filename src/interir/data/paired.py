"""Paired degraded/clean folders for evaluation.

Recognised layouts (sub-folder names, first match wins):

============  ============  =============================================================
input         target        example
============  ============  =============================================================
``input``     ``target``    what ``interir synth`` writes (one folder per combination)
``rain``      ``norain``    Rain100H: ``rain/N.png`` -> ``norain/N.png``
``hazy``      ``clear``     SOTS: ``hazy/<scene>_<k>.png`` -> ``clear/<scene>.png``
``lq``        ``gt``        generic
``noisy``     ``clean``     generic
============  ============  =============================================================

An input is paired with the target of the same stem, or failing that with the target named by
its stem with trailing ``_<suffix>`` parts removed (``1400_1`` -> ``1400``; ``0001_0.8_0.2`` ->
``0001``), so several inputs may share one target. Extensions may differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from interir.utils.io import list_images, read_image

__all__ = ["LAYOUTS", "PairedImageDataset", "ImagePair", "find_pairs", "detect_layout",
           "collate_pairs"]

#: (input folder, target folder) names recognised by :func:`detect_layout`, in order.
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("input", "target"),
    ("rain", "norain"),
    ("hazy", "clear"),
    ("lq", "gt"),
    ("noisy", "clean"),
)


@dataclass(frozen=True)
class ImagePair:
    """One evaluation pair: ``name`` is the input's stem."""

    name: str
    input: Path
    target: Path


def detect_layout(root: str | os.PathLike) -> tuple[str, str]:
    """The ``(input, target)`` sub-folder names present under ``root``.

    Raises:
        FileNotFoundError: root missing.
        ValueError: no known layout; the message lists the accepted ones.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"paired dataset folder '{root}' does not exist; check the path")
    for inp, tgt in LAYOUTS:
        if (root / inp).is_dir() and (root / tgt).is_dir():
            return inp, tgt
    subs = sorted(p.name for p in root.iterdir() if p.is_dir())
    accepted = ", ".join(f"{a}/+{b}/" for a, b in LAYOUTS)
    hint = ""
    if (root / "manifest.json").is_file():
        hint = " (this looks like an `interir synth` output: pass one combination sub-folder "
        hint += "or use load_synthetic_suite)"
    raise ValueError(
        f"'{root}' has no recognised paired layout (sub-folders: {subs or 'none'}); "
        f"expected one of: {accepted}{hint}"
    )


def _match_target(stem: str, targets: dict[str, Path]) -> Path | None:
    if stem in targets:
        return targets[stem]
    parts = stem.split("_")
    for k in range(len(parts) - 1, 0, -1):
        cand = "_".join(parts[:k])
        if cand in targets:
            return targets[cand]
    return None


def _image_size(path: Path) -> tuple[int, int] | str:
    """(H, W) after EXIF orientation, from the header; or an error string."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            swap = int(img.getexif().get(0x0112, 1) or 1) in (5, 6, 7, 8)
    except Exception as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return (w, h) if swap else (h, w)


def find_pairs(
    root: str | os.PathLike, layout: tuple[str, str] | None = None, check_sizes: bool = True
) -> list[ImagePair]:
    """Pair the images of a paired folder, checking every pair once.

    Args:
        root: folder holding the input and target sub-folders.
        layout: ``(input, target)`` sub-folder names; detected when None.
        check_sizes: compare the image sizes (from the file headers).

    Returns:
        Pairs sorted by input path.

    Raises:
        ValueError: ONE error listing every problem: inputs without a target, targets no input
            uses, duplicate stems, size mismatches, unreadable headers.
    """
    root = Path(root)
    inp_dir, tgt_dir = layout or detect_layout(root)
    inputs = list_images(root / inp_dir)
    targets_list = list_images(root / tgt_dir)
    problems: list[str] = []
    targets: dict[str, Path] = {}
    for t in targets_list:
        if t.stem in targets:
            problems.append(f"duplicate target name: {targets[t.stem]} and {t}")
        targets[t.stem] = t
    seen_inputs: dict[str, Path] = {}
    pairs: list[ImagePair] = []
    used: set[Path] = set()
    for i in inputs:
        if i.stem in seen_inputs:
            problems.append(f"duplicate input name: {seen_inputs[i.stem]} and {i}")
            continue
        seen_inputs[i.stem] = i
        t = _match_target(i.stem, targets)
        if t is None:
            problems.append(f"input without a target: {i} (no {tgt_dir}/{i.stem}.* )")
            continue
        used.add(t)
        pairs.append(ImagePair(i.stem, i, t))
    for t in targets_list:
        if t not in used:
            problems.append(f"target without an input: {t}")
    if not inputs:
        problems.append(f"no images in {root / inp_dir}")
    if check_sizes:
        for p in pairs:
            si, st = _image_size(p.input), _image_size(p.target)
            if isinstance(si, str):
                problems.append(f"{p.input}: {si}")
            elif isinstance(st, str):
                problems.append(f"{p.target}: {st}")
            elif si != st:
                problems.append(
                    f"size mismatch: {p.input} is {si[1]}x{si[0]} but {p.target} is "
                    f"{st[1]}x{st[0]}"
                )
    if problems:
        listing = "\n  ".join(problems)
        raise ValueError(
            f"paired folder '{root}' ({inp_dir}/ -> {tgt_dir}/) has {len(problems)} problem(s):"
            f"\n  {listing}\nFix the files listed (rename, resize or remove them) and retry."
        )
    return pairs


class PairedImageDataset(Dataset):
    """Full-size degraded/clean pairs from a paired folder (layout auto-detected).

    Args:
        root: the folder (see the module docstring for the layouts).
        layout: ``(input, target)`` sub-folder names to force instead of detecting.
        check_sizes: verify every pair's sizes at construction.

    Items: ``{"input": (3, H, W), "target": (3, H, W), "name": str}``, float32 in [0, 1]
    (grayscale replicated to RGB, alpha dropped, as :func:`interir.utils.io.read_image`).
    Use ``batch_size=1`` (sizes differ) or :func:`collate_pairs`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        layout: tuple[str, str] | None = None,
        check_sizes: bool = True,
    ) -> None:
        self.root = Path(root)
        self.layout = layout or detect_layout(self.root)
        self.pairs = find_pairs(self.root, self.layout, check_sizes=check_sizes)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __getitem__(self, index: int) -> dict:
        p = self.pairs[index]
        x = read_image(p.input).image
        y = read_image(p.target).image
        if x.shape != y.shape:  # files changed since the scan
            raise ValueError(
                f"size mismatch: {p.input} {tuple(x.shape)} vs {p.target} {tuple(y.shape)}"
            )
        return {"input": x, "target": y, "name": p.name}


def collate_pairs(batch: list[dict]) -> dict:
    """Collate dataset items: tensors are stacked (same sizes needed), other values kept as
    lists (names, parameter records with ``None`` fields)."""
    out: dict = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        if isinstance(vals[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot stack '{key}' of different sizes {sorted(shapes)}; use batch_size=1"
                )
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out
