"""Random clean patches from folders of clean images, for training with on-the-fly degradation.

The dataset stays cheap: it only reads, crops and flips. The training loop degrades whole
batches with :class:`interir.degradations.DegradationPipeline` (fast, batched, on the device).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from interir.utils.io import ImageReadError, list_images, read_image

__all__ = ["CleanPatchDataset", "read_exclusion_list", "pad_to_min_size"]


def read_exclusion_list(source: str | os.PathLike | Iterable[str]) -> set[str]:
    """Names of files to leave out of training.

    Args:
        source: a text file (one entry per line; blank lines and ``#`` comments ignored; the
            first tab/space-separated field is the file name, as in
            ``train/bsds432/overlap_with_Rain100H.txt``) or an iterable of names.

    Returns:
        The set of names (base names; matched against a file's name or its stem).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"exclusion list '{path}' does not exist; check the path")
        names = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            names.add(Path(line.split()[0]).name)
        return names
    return {Path(str(n)).name for n in source}


def pad_to_min_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad ``(C, H, W)`` on the bottom/right until both sides are at least ``size``.

    Reflection is repeated for sides less than half the size; 1-pixel sides are replicated.
    """
    for dim in (-2, -1):
        while image.shape[dim] < size:
            n = image.shape[dim]
            amount = min(size - n, n - 1)
            mode = "reflect"
            if amount <= 0:  # a 1-pixel side cannot be reflected
                amount, mode = size - n, "replicate"
            pad = (0, 0, 0, amount) if dim == -2 else (0, amount, 0, 0)
            image = F.pad(image[None], pad, mode=mode)[0]
    return image


class CleanPatchDataset(Dataset):
    """Random ``patch_size`` crops of clean images, with random horizontal/vertical flips.

    Every file is read once at construction: unreadable files are reported (one warning naming
    each path) and skipped, so a bad file never crashes a DataLoader worker. Images smaller
    than the patch are reflect-padded (one warning listing them). Conversion follows
    :func:`interir.utils.io.read_image`: grayscale is replicated to RGB, alpha is dropped,
    16-bit is scaled to [0, 1].

    Args:
        roots: a folder, an image file, or a list of them.
        patch_size: side P of the square patches.
        exclude: exclusion list file or iterable of names (matched on file name or stem).
        augment: random flips (horizontal and vertical, each with probability 1/2).
        recursive: scan sub-folders.
        repeat: each image appears ``repeat`` times per epoch (longer epochs on small sets).
        verify: decode every file at construction (True) or only check its header (False).

    Items are ``(3, P, P)`` float32 tensors in [0, 1]. Randomness uses torch's global RNG, which
    DataLoader seeds per worker (pass ``generator=`` to the DataLoader for reproducibility).
    """

    def __init__(
        self,
        roots: str | os.PathLike | Sequence[str | os.PathLike],
        patch_size: int,
        exclude: str | os.PathLike | Iterable[str] | None = None,
        augment: bool = True,
        recursive: bool = False,
        repeat: int = 1,
        verify: bool = True,
    ) -> None:
        if int(patch_size) < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        if int(repeat) < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.patch_size = int(patch_size)
        self.augment = augment
        self.repeat = int(repeat)
        self.verified = bool(verify)
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        candidates: list[Path] = []
        for root in roots:
            root = Path(root)
            if root.is_file():
                candidates.append(root)
            else:
                candidates.extend(list_images(root, recursive=recursive))
        excluded = read_exclusion_list(exclude) if exclude is not None else set()
        self.excluded: list[Path] = [
            p for p in candidates if p.name in excluded or p.stem in excluded
        ]
        keep = [p for p in candidates if not (p.name in excluded or p.stem in excluded)]

        self.files: list[Path] = []
        self.sizes: list[tuple[int, int]] = []
        self.skipped: list[tuple[Path, str]] = []
        for p in keep:
            try:
                size = self._probe(p, verify)
            except ImageReadError as exc:
                self.skipped.append((p, str(exc)))
                continue
            self.files.append(p)
            self.sizes.append(size)
        if self.skipped:
            lines = "\n".join(f"  {p}: {reason}" for p, reason in self.skipped)
            warnings.warn(
                f"CleanPatchDataset skipped {len(self.skipped)} unreadable file(s):\n{lines}",
                stacklevel=2,
            )
        self.small = [p for p, (h, w) in zip(self.files, self.sizes)
                      if h < self.patch_size or w < self.patch_size]
        if self.small:
            names = ", ".join(str(p) for p in self.small[:10])
            more = f" and {len(self.small) - 10} more" if len(self.small) > 10 else ""
            warnings.warn(
                f"{len(self.small)} image(s) smaller than the {self.patch_size}px patch will be "
                f"reflect-padded: {names}{more}",
                stacklevel=2,
            )
        if not self.files:
            raise ValueError(
                f"no readable training images found in {[str(r) for r in roots]} "
                f"({len(candidates)} candidates, {len(self.excluded)} excluded, "
                f"{len(self.skipped)} unreadable); check the folders and the exclusion list"
            )

    @staticmethod
    def _probe(path: Path, verify: bool) -> tuple[int, int]:
        if verify:
            return read_image(path).size
        try:
            with Image.open(path) as img:
                w, h = img.size
                swap = int(img.getexif().get(0x0112, 1) or 1) in (5, 6, 7, 8)
        except Exception as exc:
            raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
        return (w, h) if swap else (h, w)

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def load(self, index: int) -> torch.Tensor:
        """The full clean image ``(3, H, W)`` of file ``index`` (no crop)."""
        # Files decoded at the scan (verify=True) had their data checked there.
        return read_image(self.files[index], check_data=not self.verified).image

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.files)
        i = index % n
        for attempt in range(n):
            j = (i + attempt) % n
            try:
                image = self.load(j)
                break
            except ImageReadError as exc:  # file changed on disk since the scan
                warnings.warn(f"skipping unreadable training image: {exc}", stacklevel=2)
        else:  # pragma: no cover - every file broke after the scan
            raise RuntimeError("every training image became unreadable after the initial scan")
        p = self.patch_size
        image = pad_to_min_size(image, p)
        h, w = image.shape[-2:]
        top = int(torch.randint(0, h - p + 1, (1,)))
        left = int(torch.randint(0, w - p + 1, (1,)))
        patch = image[:, top : top + p, left : left + p]
        if self.augment:
            flips = torch.rand(2)
            if flips[0] < 0.5:
                patch = patch.flip(-1)
            if flips[1] < 0.5:
                patch = patch.flip(-2)
        return patch.contiguous()
