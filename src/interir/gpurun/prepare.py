"""``python -m interir.gpurun prepare``: what a device call carries, chosen to fit its size limit.

A device call sends the repository (tracked files and untracked files git does not ignore) plus
the ignored folders named in its ``carry``, 64 MiB at most (/work/.library/device/README.md).
The GPU machine has no network and no shared data, so this step, run here, fills two carried
folders and keeps the whole call under :data:`TARGET_BYTES` (56 MiB: 8 MiB of margin for commits
made between preparing and calling):

1. ``.whl/``: wheels of the packages the GPU image lacks (:data:`WHEELS`), for its Python 3.12 on
   x86-64, at this interpreter's versions;
2. ``.gpu-data/train/``: the clean training images of the run's recipe (:data:`PARTS` of the
   shared training folder), copied byte for byte (they are JPEGs: any lossless re-encoding would
   be larger). Always carried: the validation images (:data:`VAL_SPLIT`), the Rain100H overlap
   list and the SOURCE notes. Never carried: the images the recipe excludes from training (the
   overlap list) and the folders it does not read (e.g. ``RainTrainL``). The other training
   images are shuffled with a fixed seed and taken in that order while they fit the room left;
   one that does not fit is left out and the next one tried. The order is fixed; how many fit
   depends on what the repository leaves, and fewer than :data:`MIN_TRAIN_IMAGES` is an error;
3. ``.gpu-data/prepare.json``: what was carried, what was left out and why, and the payload's
   size; the device run copies it into its report (``data.prepared``).

The repository's own files, the shipped weights among them, travel with every call and cannot be
left out; their size is recorded, and the training images get what they leave.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from interir.utils.files import atomic_write_text

__all__ = ["LIMIT_BYTES", "TARGET_BYTES", "PARTS", "Selection", "repository_files", "select_images",
           "download_wheels", "prepare", "read_manifest", "prepare_main"]

MiB = 2**20
#: What one device call may send (working tree plus carried folders).
LIMIT_BYTES = 64 * MiB
#: What this step fills the call to, leaving the rest as margin.
TARGET_BYTES = 56 * MiB
#: Bytes counted for the wheels when they are not downloaded (``--offline``) and fewer are there:
#: the six wheels are about 2.6 MiB.
WHEELS_RESERVE = 4 * MiB
#: Bytes counted for prepare.json itself (a few KiB).
MANIFEST_RESERVE = 64 * 1024
#: Folders of the shared training folder that the run's recipe (configs/paper-mdir.yaml) reads.
PARTS = ("bsds432", "photos")
#: The recipe's list of BSDS images that are Rain100H targets: never trained on, so not carried.
OVERLAP = "bsds432/overlap_with_Rain100H.txt"
#: Names of the validation images (in bsds432/), relative to the repository root.
VAL_SPLIT = "configs/splits/bsds432-val.txt"
#: Packages interir needs that the GPU machine's image lacks.
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions",
          "omegaconf")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
#: The order the optional images are taken in.
SEED = 0
#: A run needs at least this many training images (or all there are, if fewer).
MIN_TRAIN_IMAGES = 100


class PrepareError(RuntimeError):
    """The payload cannot be prepared within the limit, or an input is missing."""


def _names(list_file: Path) -> set[str]:
    """File names in a list: first field of each line, blank lines and ``#`` comments skipped."""
    lines = (ln.strip() for ln in list_file.read_text(encoding="utf-8").splitlines())
    return {Path(ln.split()[0]).name for ln in lines if ln and not ln.startswith("#")}


def repository_files(repo: Path, skip: list[Path]) -> dict[Path, int]:
    """What a device call sends of the repository: tracked and untracked-not-ignored files
    (absolute path -> bytes), leaving out those under ``skip`` (counted as carried folders)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=repo, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PrepareError(f"cannot list the files of '{repo}' with git ({exc}); run this step in "
                           "the repository's git checkout") from None
    repo, skip = repo.resolve(), [s.resolve() for s in skip]
    sizes = {}
    for name in filter(None, listed.decode().split("\0")):
        path = repo / name  # a link travels as a link: its own size, not its target's
        if (path.is_symlink() or path.is_file()) and not any(path.is_relative_to(s) for s in skip):
            sizes[path] = path.lstat().st_size
    return sizes


@dataclass
class Selection:
    """Files of the shared training folder to carry (paths relative to it) and what is left out."""

    sizes: dict[str, int]
    required: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    available: int = 0
    validation: int = 0
    left_out: list[dict[str, Any]] = field(default_factory=list)

    def carried(self) -> list[str]:
        return sorted(self.required + self.chosen)

    def bytes(self, names: list[str]) -> int:
        return sum(self.sizes[n] for n in names)


def _left_out(sel: Selection, what: str, names: list[str], reason: str, listed: bool = False) -> None:
    if names:
        entry = {"what": what, "files": len(names), "bytes": sel.bytes(names), "reason": reason}
        sel.left_out.append({**entry, "names": sorted(names)} if listed else entry)


def _sort_parts(source: Path, val_names: set[str], sel: Selection) -> tuple[list[str], list[str]]:
    """Fill ``sel.required`` and ``sel.sizes``; return (optional training images, excluded ones)."""
    overlap = _names(source / OVERLAP)
    optional, excluded, val_found = [], [], set()
    for part in PARTS:
        for path in sorted(p for p in (source / part).rglob("*") if p.is_file()):
            rel = path.relative_to(source).as_posix()
            sel.sizes[rel] = path.stat().st_size
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                sel.required.append(rel)  # the overlap list (the recipe reads it) and SOURCE notes
            elif path.name in overlap:
                excluded.append(rel)
            elif part == PARTS[0] and path.name in val_names:
                sel.required.append(rel)
                val_found.add(path.name)
            else:
                optional.append(rel)
    if val_found != val_names:
        raise PrepareError(f"validation images {sorted(val_names - val_found)} (listed in {VAL_SPLIT}) are "
                           f"not in '{source / PARTS[0]}'; pass the shared training folder as SOURCE")
    sel.validation = len(val_found)
    return optional, excluded


def select_images(source: Path, val_names: set[str], room: int, seed: int = SEED) -> Selection:
    """Choose what of ``source`` (laid out like the shared training folder) fits in ``room`` bytes.

    The required files (notes, the overlap list, the validation images) always; then the other
    training images in a seeded random order, each one that still fits (see the module doc).
    """
    for rel in (*PARTS, OVERLAP):
        if not (source / rel).exists():
            raise PrepareError(f"'{source / rel}' does not exist: pass the shared training folder (the "
                               f"one holding {' and '.join(PARTS)}, e.g. ../shared/data/train) as SOURCE")
    sel = Selection(sizes={})
    optional, excluded = _sort_parts(source, val_names, sel)
    random.Random(seed).shuffle(optional)
    left = room - sel.bytes(sel.required)
    over = []
    for rel in optional:
        if sel.sizes[rel] <= left:
            sel.chosen.append(rel)
            left -= sel.sizes[rel]
        else:
            over.append(rel)
    sel.available = len(optional)
    for extra in sorted(p for p in source.iterdir() if p.name not in PARTS):
        files = [q for q in ([extra] if extra.is_file() else extra.rglob("*")) if q.is_file()]
        sel.left_out.append({"what": extra.name + ("/" if extra.is_dir() else ""), "files": len(files),
                             "bytes": sum(q.stat().st_size for q in files),
                             "reason": "not read by the run's recipe"})
    _left_out(sel, f"images listed in {OVERLAP}", excluded, "excluded from training by the recipe")
    _left_out(sel, "training images past the room left", over, "the payload would pass its target size",
              listed=True)
    return sel


def _pins() -> list[tuple[str, str]]:
    """(package, version) of each of :data:`WHEELS` as installed for this interpreter."""
    try:
        return [(name, importlib.metadata.version(name)) for name in WHEELS]
    except importlib.metadata.PackageNotFoundError as exc:
        raise PrepareError(f"package {exc} is not installed here; run this step with the project's "
                           "interpreter (PYTHON=.venv/bin/python)") from None


def download_wheels(folder: Path) -> list[Path]:
    """Wheels of :data:`WHEELS` for Python 3.12 on x86-64 in ``folder``, one version of each
    (another version makes the install on the device stop); those already there are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = _pins()
    for name, version in pins:
        for old in folder.glob(f"{name.replace('-', '_')}-*.whl"):
            if old.name.split("-")[1] != version:
                old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(folder)]
    cmd += [arg for p in PLATFORMS for arg in ("--platform", p)] + [f"{n}=={v}" for n, v in pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrepareError(f"pip could not download the wheels ({proc.stderr.strip()[-800:]}); check the "
                           f"package index, or put them in '{folder}' and pass --offline")
    return _wheel_files(folder, pins)


def _wheel_files(folder: Path, pins: list[tuple[str, str]]) -> list[Path]:
    return sorted(f for n, v in pins for f in folder.glob(f"{n.replace('-', '_')}-{v}-*.whl"))


def _check_out(out: Path, default_out: Path) -> None:
    """Refuse to replace an ``out/train`` that this step did not make (no prepare.json beside it,
    and not the default folder, which git ignores), so a mistyped --out loses nothing."""
    train = out / "train"
    ours = (out / "prepare.json").is_file() or out.resolve() == default_out.resolve()
    if train.exists() and not ours and any(train.iterdir()):
        raise PrepareError(f"'{train}' exists and was not made by this step (no prepare.json beside "
                           "it); remove it yourself or choose another --out")


def _copy(source: Path, out: Path, names: list[str]) -> Path:
    """Copy ``names`` (relative to ``source``) into ``out/train`` through a partial folder that
    replaces the previous copy once complete, so a crash leaves no half copy under that name.
    Modes are not copied: the shared files are read-only, and the next prepare must be able to
    remove the copy."""
    partial = out / "train.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for part in PARTS:
        (partial / part).mkdir(parents=True)  # the recipe's roots exist even if one is empty
    for rel in names:
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, partial / rel)
    shutil.rmtree(out / "train", ignore_errors=True)
    partial.rename(out / "train")
    return out / "train"


def _folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _other_bytes(out: Path) -> int:
    """Bytes of files in ``out`` that travel with it but that this step does not replace."""
    ours = [out / "train", out / "train.partial", out / "prepare.json"]
    files = (p for p in out.rglob("*") if p.is_file()) if out.is_dir() else ()
    return sum(p.lstat().st_size for p in files if not any(p.is_relative_to(o) for o in ours))


def _wheels(folder: Path, offline: bool) -> tuple[list[Path], int]:
    """The wheel files and the bytes counted for them (at least the reserve when offline)."""
    if not offline:  # the whole folder travels, other files in it too
        return download_wheels(folder), _folder_bytes(folder)
    files = _wheel_files(folder, _pins()) if folder.is_dir() else []
    return files, max(WHEELS_RESERVE, _folder_bytes(folder))


def _check_fit(sel: Selection, room: int, fixed: dict[str, int], target: int) -> None:
    """Raise when the required files do not fit, or too few training images do."""
    fixed_text = ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in fixed.items())
    fix = ("make the repository smaller: untracked files that git does not ignore travel too (move "
           "them out or ignore them), and so do tracked ones such as new shipped weights")
    if sel.bytes(sel.required) > room:
        raise PrepareError(f"the validation images and notes ({sel.bytes(sel.required) / MiB:.1f} MiB) do "
                           f"not fit the {max(room, 0) / MiB:.1f} MiB left under the {target / MiB:.0f} "
                           f"MiB target ({fixed_text}); {fix}")
    needed = min(MIN_TRAIN_IMAGES, sel.available)
    if len(sel.chosen) < needed:
        raise PrepareError(f"only {len(sel.chosen)} of {sel.available} training images fit in the "
                           f"{room / MiB:.1f} MiB left under the {target / MiB:.0f} MiB target "
                           f"({fixed_text}); a run needs at least {needed}; {fix}")


def _repo_root() -> Path:
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise PrepareError(f"'{Path.cwd()}' is not in a git checkout; run this step in the interir "
                           "repository (scripts/device_prepare.sh does)") from None
    return Path(top)


def prepare(source: Path, out: Path, wheels: Path, repo: Path, *, offline: bool = False,
            target: int = TARGET_BYTES, seed: int = SEED) -> dict[str, Any]:
    """Fill ``wheels`` and ``out/train`` within ``target`` bytes for the whole call, write
    ``out/prepare.json`` and return it (see the module doc). Raises :class:`PrepareError`."""
    if target > LIMIT_BYTES:
        raise PrepareError(f"target {target / MiB:.1f} MiB is over the device call's "
                           f"{LIMIT_BYTES / MiB:.0f} MiB; choose a smaller one")
    _check_out(out, repo / ".gpu-data")
    wheel_files, wheel_bytes = _wheels(wheels, offline)
    repo_files = repository_files(repo, skip=[out, wheels])
    fixed = {"repository": sum(repo_files.values()), "wheels": wheel_bytes, "prepare.json": MANIFEST_RESERVE,
             "other files in --out": _other_bytes(out)}
    room = target - sum(fixed.values())
    sel = select_images(source, _names(repo / VAL_SPLIT), room, seed)
    _check_fit(sel, room, fixed, target)
    train = out / "train"
    payload = {"bytes": sum(fixed.values()) + sel.bytes(sel.carried()), "limit_bytes": LIMIT_BYTES,
               "target_bytes": target, "repository_bytes": fixed["repository"],
               "shipped_weights_bytes": _under(repo_files, repo.resolve() / "src" / "interir" / "weights"),
               "wheels_bytes": wheel_bytes, "data_bytes": sel.bytes(sel.carried()),
               "other_bytes": fixed["other files in --out"],
               "counted": "prepare.json as 64 KiB; wheels as 4 MiB at least when --offline"}
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = {"kind": "interir-device-prepare", "created": created, "source": str(source),
                "train": str(train), "seed": seed, "payload": payload,
                "wheels": {"files": [f.name for f in wheel_files], "offline": offline},
                "carried": _carried(sel), "left_out": sel.left_out}
    text = json.dumps(manifest, indent=2) + "\n"
    if payload["bytes"] > target or len(text.encode()) > MANIFEST_RESERVE:  # not by construction
        raise PrepareError(f"the payload came to {payload['bytes'] / MiB:.1f} MiB and prepare.json to "
                           f"{len(text.encode())} bytes, over what was counted; report this as a bug")
    # The manifest first: a copy cut short leaves a folder the next prepare may replace.
    atomic_write_text(out / "prepare.json", text)
    _copy(source, out, sel.carried())
    return manifest


def _under(files: dict[Path, int], folder: Path) -> int:
    return sum(size for path, size in files.items() if path.is_relative_to(folder))


def _carried(sel: Selection) -> dict[str, Any]:
    names = sel.carried()
    return {"files": len(names), "bytes": sel.bytes(names), "training_images": len(sel.chosen),
            "training_images_available": sel.available, "validation_images": sel.validation,
            "parts": {p: sum(1 for n in names if n.startswith(p + "/")) for p in PARTS}}


def read_manifest(data: Path) -> dict[str, Any] | None:
    """The prepare.json beside a prepared training folder (``<out>/train``), or None."""
    path = Path(data).parent / "prepare.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # the run goes on; the report says why it is missing
        return {"error": f"cannot read {path}: {exc}; rerun scripts/device_prepare.sh"}


def _summary(m: dict[str, Any]) -> list[str]:
    c, p = m["carried"], m["payload"]
    lines = [f"wheels: {' '.join(m['wheels']['files']) or '(none)'}"
             + (" (offline: not downloaded)" if m["wheels"]["offline"] else ""),
             f"training images: {c['training_images']} of {c['training_images_available']} carried, "
             f"plus {c['validation_images']} validation images, in {m['train']} ({c['bytes'] / MiB:.1f} MiB)"]
    lines += [f"left out: {e['what']} ({e['files']} files, {e['bytes'] / MiB:.1f} MiB): {e['reason']}"
              for e in m["left_out"]]
    lines.append(f"a device call sends about {p['bytes'] / MiB:.1f} MiB "
                 f"(target {p['target_bytes'] / MiB:.0f}, "
                 f"limit {p['limit_bytes'] / MiB:.0f} MiB; the repository {p['repository_bytes'] / MiB:.1f} "
                 f"MiB of it, shipped weights {p['shipped_weights_bytes'] / MiB:.1f} MiB)")
    return lines


def prepare_main(argv: list[str]) -> int:
    """``prepare [SOURCE] [--out DIR] [--wheels DIR] [--offline]``: see the module doc."""
    parser = argparse.ArgumentParser(
        prog="python -m interir.gpurun prepare",
        description="Fill .whl/ and .gpu-data/ for a device call, within its size limit (docs/gpu.md).")
    parser.add_argument("source", nargs="?", type=Path, default=None,
                        help="the shared training folder (default: ../shared/data/train beside the checkout)")
    parser.add_argument("--out", type=Path, default=None, help="data folder to fill (default: .gpu-data)")
    parser.add_argument("--wheels", type=Path, default=None, help="wheel folder (default: .whl)")
    parser.add_argument("--offline", action="store_true", help="do not download wheels: use those in "
                        f"--wheels, counting at least {WHEELS_RESERVE // MiB} MiB for them")
    args = parser.parse_args(argv)
    try:
        repo = _repo_root()
        manifest = prepare(args.source or repo / ".." / "shared" / "data" / "train",
                           args.out or repo / ".gpu-data", args.wheels or repo / ".whl", repo,
                           offline=args.offline)
    except PrepareError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    print("\n".join(_summary(manifest)))
    return 0
