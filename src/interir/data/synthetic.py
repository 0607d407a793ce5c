"""Deterministic synthetic multi-degradation test sets.

Every (combination, image) pair gets its own generator, seeded from a hash of
``(seed, combination, image stem)``, so an image's degradation does not depend on which other
images or combinations are processed, or in what order. :class:`SyntheticPairDataset` builds the
pairs on the fly; :func:`synthesize_suite` (the ``interir synth`` command) writes them as

::

    OUT_DIR/<combination>/input/<stem>.png     degraded, 8-bit RGB PNG
    OUT_DIR/<combination>/target/<stem>.png    clean, 8-bit RGB PNG
    OUT_DIR/manifest.json                       seed, ranges, version, per-image parameters
    OUT_DIR/manifest.csv                        the per-image rows as CSV

and :func:`load_synthetic_suite` reads such a folder back for evaluation. The output folder must be
new or empty, or hold an earlier suite that ``overwrite=True`` (``--overwrite``) replaces: the old
suite's files are deleted first, and a folder holding anything else is refused, so a user's files
are never overwritten and no stale combination survives.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from interir._version import __version__
from interir.data.paired import PairedImageDataset, find_pairs
from interir.degradations.haze import PATCH_DEPTH_MODES, HazeSampling, patch_depth
from interir.degradations.pipeline import (
    COMBINATIONS,
    DEFAULT_MAX_LEVELS,
    RECORD_FIELDS,
    DegradationParams,
    DegradationPipeline,
    combination_rank,
    parse_combinations,
    parse_levels,
)
from interir.utils.files import atomic_write_text, check_writable_dir, file_in_folder, sha256_of
from interir.utils.io import list_images, read_image, write_image

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "CBSD68_MDIR_SEED",
    "item_seed",
    "quantize8",
    "SyntheticPairDataset",
    "synthesize_suite",
    "SyntheticSuite",
    "load_synthetic_suite",
    "MANIFEST_FILE",
    "SuiteImage",
    "combination_rank",
    "is_suite",
    "read_manifest",
    "read_suite",
]

MANIFEST_FORMAT = "interir-synth"
MANIFEST_FILE = "manifest.json"
#: Version of the synthesis recipe and manifest layout; bump when outputs would change.
MANIFEST_VERSION = 1
#: Seed of the canonical CBSD68-MDIR test set.
CBSD68_MDIR_SEED = 2025

#: Written first and deleted last: lists the files of a suite being written, so that a folder
#: left by an interrupted ``interir synth`` is still recognised as a suite (and can be replaced).
PARTIAL_MARKER = ".interir-synth-partial.json"

CSV_FIELDS: tuple[str, ...] = ("combination", "name", "source", "height", "width") + tuple(
    f for f in RECORD_FIELDS if f != "combination"
)


def item_seed(seed: int, combination: str, name: str) -> int:
    """The generator seed of one (combination, image): a 63-bit hash, stable across runs."""
    key = f"interir-synth/v{MANIFEST_VERSION}/{int(seed)}/{combination}/{name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & (2**63 - 1)


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid exactly as :func:`write_image` does (``floor(255 x + 0.5)``)."""
    return torch.floor(x.clamp(0, 1).double() * 255.0 + 0.5).div(255.0).to(x.dtype)


def _clean_files(clean: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(clean, (str, os.PathLike)):
        p = Path(clean)
        files = [p] if p.is_file() else list_images(p)
    else:
        files = [Path(f) for f in clean]
    if not files:
        raise ValueError(f"no clean images found in {clean}; check the folder")
    stems: dict[str, Path] = {}
    dup = []
    for f in files:
        if f.stem in stems:
            dup.append(f"{stems[f.stem]} and {f}")
        stems[f.stem] = f
    if dup:
        raise ValueError(
            "clean images must have unique names (outputs are named by stem): "
            + "; ".join(dup)
        )
    return files


class SyntheticPairDataset(Dataset):
    """Degraded/clean full-image pairs built deterministically on the fly.

    Item ``i`` is combination ``i // N`` applied to clean image ``i % N`` (N images). The
    result equals what :func:`synthesize_suite` writes for the same seed.

    Args:
        clean: folder of clean images or a list of files.
        combinations: one name, a comma-separated string or a sequence (default: all seven).
        seed: base seed.
        levels: fixed levels (``{"haze": 100}`` or ``"haze=100,noise=25"``); drawn otherwise.
        max_levels: level range ends (default 150 / 300 / 50).
        quantize: round input and target to 8-bit levels, as the written PNG files.
        haze_depth: depth of the haze: ``"centre"`` (default) the image's centre-distance
            pseudo-depth, as the CBSD68-MDIR test set; any other mode of
            :func:`interir.degradations.patch_depth` (e.g. ``"scene"``: depth with edges where the
            image has them, closer to real haze) is drawn from the item's own generator after its
            parameters, so items stay independent of each other.
        haze_airlight: range of the airlight drawn per image (default the pipeline's [0.5, 0.9]).
        rain_style: rain recipe, a name of :data:`interir.degradations.RAIN_STYLES` (default
            ``"classic"``, CBSD68-MDIR's).

    Items: ``{"input", "target"}`` ``(3, H, W)`` float32 in [0, 1], ``"name"`` (``stem``),
    ``"combination"``, ``"params"`` (one :meth:`DegradationParams.to_records` dict). Use
    ``batch_size=1`` with :func:`interir.data.collate_pairs`.
    """

    def __init__(
        self,
        clean: str | os.PathLike | Sequence[str | os.PathLike],
        combinations: str | Sequence[str] | None = None,
        seed: int = CBSD68_MDIR_SEED,
        levels: str | Mapping[str, float] | None = None,
        max_levels: Mapping[str, float] | None = None,
        quantize: bool = True,
        haze_depth: str = "centre",
        haze_airlight: tuple[float, float] | None = None,
        rain_style: str = "classic",
    ) -> None:
        if haze_depth not in PATCH_DEPTH_MODES:
            raise ValueError(f"haze_depth must be one of {PATCH_DEPTH_MODES}, got {haze_depth!r}")
        self.files = _clean_files(clean)
        self.combinations = parse_combinations(combinations)
        self.seed = int(seed)
        self.levels = parse_levels(levels)
        self.max_levels = dict(DEFAULT_MAX_LEVELS)
        if max_levels:
            self.max_levels.update(parse_levels(max_levels))
        self.quantize = quantize
        self.haze_depth = haze_depth
        sampling = HazeSampling() if haze_airlight is None else HazeSampling(airlight=tuple(haze_airlight))
        self._pipes = {
            c: DegradationPipeline((c,), self.max_levels, self.levels, haze_sampling=sampling,
                                   rain_sampling=rain_style)
            for c in self.combinations
        }

    def __len__(self) -> int:
        return len(self.files) * len(self.combinations)

    def degrade(self, clean: torch.Tensor, combination: str, name: str):
        """Degrade one clean ``(3, H, W)`` image as item ``(combination, name)``.

        Returns:
            ``(degraded (3, H, W), DegradationParams of one image)``.
        """
        g = torch.Generator().manual_seed(item_seed(self.seed, combination, name))
        pipe = self._pipes[combination]
        params = pipe.sample(1, g, combination=combination)
        x = clean[None].float()
        if self.quantize:
            x = quantize8(x)
        depth = None
        if self.haze_depth != "centre" and "haze" in combination.split("+"):
            depth = patch_depth(1, x.shape[-2], x.shape[-1], g, self.haze_depth, clean=x)
        y = pipe.apply(x, params, depth)[0]
        if self.quantize:
            y = quantize8(y)
        return y, params

    def __getitem__(self, index: int) -> dict:
        n = len(self.files)
        combination = self.combinations[index // n]
        f = self.files[index % n]
        clean = read_image(f).image
        y, params = self.degrade(clean, combination, f.stem)
        target = quantize8(clean) if self.quantize else clean
        return {
            "input": y,
            "target": target,
            "name": f.stem,
            "combination": combination,
            "params": params.to_records()[0],
        }


# ------------------------------------------------------------------------------------------
# writing and reading a whole suite


def _suite_files(out: Path) -> set[Path] | None:
    """The files an earlier suite (or an interrupted one) wrote in ``out``, or None if ``out``
    holds no suite. Listed paths that would leave ``out`` are ignored: a manifest is never trusted
    to name files outside its folder."""
    listed: list[str] = []
    try:
        if (out / PARTIAL_MARKER).is_file():
            listed = list(json.loads((out / PARTIAL_MARKER).read_text(encoding="utf-8"))["files"])
        elif (out / "manifest.json").is_file():
            manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("format") != MANIFEST_FORMAT:
                return None
            listed = [r[k] for r in manifest.get("images", []) for k in ("input", "target")]
        else:
            return None
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return None
    root = out.resolve()
    files = {out / name for name in ("manifest.json", "manifest.csv", PARTIAL_MARKER)}
    for name in listed:
        path = (out / str(name)).resolve()
        if path.is_relative_to(root) and path != root:
            files.add(out / path.relative_to(root))
    return files


def _belongs_to_suite(path: Path, suite: set[Path]) -> bool:
    """A suite file, or the temporary file of an interrupted write of one (``.<name>.tmp`` or
    ``.<name>.<random>.tmp``, see :func:`interir.utils.files.atomic_open`)."""
    if path in suite:
        return True
    name = path.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    rest = name[1:-4]
    return path.parent / rest in suite or path.parent / rest.rsplit(".", 1)[0] in suite


def _clear_folder_for_suite(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new suite: new, empty, or an earlier suite deleted (``overwrite``).

    Raises:
        FileExistsError: ``out`` holds other files, or a suite and ``overwrite`` is False.
    """
    if not out.is_dir() or not any(out.iterdir()):
        return
    suite = _suite_files(out)
    if suite is None:
        raise FileExistsError(
            f"output folder '{out}' is not empty and holds no interir synth suite (manifest.json); "
            "synth would overwrite its files. Fix: choose a new or empty folder"
        )
    if not overwrite:
        raise FileExistsError(
            f"output folder '{out}' already holds a synthetic suite. Fix: pass --overwrite "
            "(overwrite=True) to replace it, or choose another folder"
        )
    files = [p for p in out.rglob("*") if p.is_symlink() or not p.is_dir()]
    others = sorted(p for p in files if not _belongs_to_suite(p, suite))
    if others:
        shown = ", ".join(str(p.relative_to(out)) for p in others[:3])
        raise FileExistsError(
            f"output folder '{out}' holds {len(others)} file(s) that are not part of its suite "
            f"({shown}{', ...' if len(others) > 3 else ''}); --overwrite replaces a suite only. "
            "Fix: move those files away, or choose another folder"
        )
    for path in files:
        path.unlink()
    # Deepest first, so a folder is empty when its turn comes.
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                         reverse=True):
        folder.rmdir()


def synthesize_suite(
    clean: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    seed: int,
    combinations: str | Sequence[str] | None = None,
    levels: str | Mapping[str, float] | None = None,
    max_levels: Mapping[str, float] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the synthetic test set (layout in the module docstring) and return the manifest.

    Args:
        clean: folder of clean images (or a list of files); names must be unique by stem.
        out_dir: output folder: new, empty, or an earlier suite to replace with ``overwrite``.
        seed: base seed; each (combination, image) is seeded from it by :func:`item_seed`.
        combinations: which combinations (default all seven).
        levels: fixed levels, e.g. ``"haze=100,rain=200,noise=25"``; drawn otherwise.
        max_levels: level range ends (default 150 / 300 / 50).
        progress: called as ``progress(done, total, message)`` after each image.
        overwrite: delete an earlier suite in ``out_dir`` first (a folder holding other files is
            refused even so).

    Returns:
        The manifest dict (also written to ``manifest.json``; rows to ``manifest.csv``).

    Raises:
        ImageReadError: a clean image cannot be read (a test set must not silently skip).
        FileExistsError: ``out_dir`` is not empty and not a suite, or a suite without ``overwrite``.
        OutputPathError: ``out_dir`` cannot be written.
    """
    ds = SyntheticPairDataset(clean, combinations, seed, levels, max_levels, quantize=True)
    out = Path(out_dir)
    check_writable_dir(out)
    _clear_folder_for_suite(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    planned = ["manifest.json", "manifest.csv"] + [
        f"{comb}/{kind}/{f.stem}.png" for comb in ds.combinations for f in ds.files
        for kind in ("input", "target")]
    atomic_write_text(out / PARTIAL_MARKER, json.dumps({"files": planned}) + "\n", fsync=False)
    total = len(ds)
    done = 0
    rows: list[dict[str, Any]] = []
    sources = []
    for f in ds.files:
        loaded = read_image(f)
        clean_q = quantize8(loaded.image)
        h, w = loaded.size
        sources.append({
            "name": f.stem,
            "file": f.name,
            "sha256": sha256_of(f),
            "height": h,
            "width": w,
            "bit_depth": loaded.bit_depth,
            "was_grayscale": loaded.was_grayscale,
        })
        for comb in ds.combinations:
            y, params = ds.degrade(loaded.image, comb, f.stem)
            write_image(out / comb / "input" / f"{f.stem}.png", y)
            write_image(out / comb / "target" / f"{f.stem}.png", clean_q)
            rec = params.to_records()[0]
            row = {"combination": comb, "name": f.stem, "source": f.name, "height": h,
                   "width": w}
            row.update({k: v for k, v in rec.items() if k != "combination"})
            row["input"] = f"{comb}/input/{f.stem}.png"
            row["target"] = f"{comb}/target/{f.stem}.png"
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total, f"{comb}/{f.stem}")
    order = {c: i for i, c in enumerate(ds.combinations)}
    rows.sort(key=lambda r: (order[r["combination"]], r["name"]))
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "interir_version": __version__,
        "seed": int(seed),
        "combinations": list(ds.combinations),
        "level_ranges": {k: [0.0, float(v)] for k, v in ds.max_levels.items()},
        "fixed_levels": dict(ds.levels),
        "sampling": {
            "haze": asdict(next(iter(ds._pipes.values())).haze_sampling),
            "rain": asdict(next(iter(ds._pipes.values())).rain_sampling),
        },
        "recipe": "ARCHITECTURE.md section 6: haze -> rain -> noise, clip [0, 1], 8-bit PNG",
        "num_images": len(ds.files),
        "sources": sources,
        "images": rows,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n", fsync=False)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS})
    atomic_write_text(out / "manifest.csv", buf.getvalue(), fsync=False)
    (out / PARTIAL_MARKER).unlink()
    return manifest


@dataclass
class SyntheticSuite:
    """A synthetic test set written by :func:`synthesize_suite`.

    Attributes:
        root: the suite folder.
        manifest: the parsed ``manifest.json``.
        datasets: one :class:`PairedImageDataset` per combination, in manifest order.
    """

    root: Path
    manifest: dict[str, Any]
    datasets: dict[str, PairedImageDataset] = field(default_factory=dict)

    @property
    def combinations(self) -> list[str]:
        return list(self.manifest["combinations"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    def records(self, combination: str | None = None) -> list[dict[str, Any]]:
        """Manifest rows (per image: levels and sub-parameters), optionally for one combination."""
        return [r for r in self.manifest["images"]
                if combination is None or r["combination"] == combination]

    def params(self, combination: str, name: str) -> dict[str, Any]:
        """The manifest row of one image."""
        for r in self.manifest["images"]:
            if r["combination"] == combination and r["name"] == name:
                return r
        raise KeyError(f"no image {name!r} for combination {combination!r} in {self.root}")

    def degradation_params(self, combination: str) -> DegradationParams:
        """Rebuilt :class:`DegradationParams` of a combination's images (dataset order)."""
        rows = {r["name"]: r for r in self.records(combination)}
        return DegradationParams.from_records([rows[n] for n in self.datasets[combination].names])


def load_synthetic_suite(
    root: str | os.PathLike, combinations: str | Sequence[str] | None = None
) -> SyntheticSuite:
    """Read a folder written by ``interir synth`` (all its combinations and the manifest).

    Args:
        root: the ``OUT_DIR`` of ``interir synth``.
        combinations: a subset to load (default: all in the manifest).

    Raises:
        FileNotFoundError: no manifest (the message says how to create the set).
        ValueError: a combination is missing, or images and manifest disagree (one error).
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(
            f"'{root}' has no manifest.json; create the set with "
            f"`interir synth CLEAN_DIR {root} --seed {CBSD68_MDIR_SEED}`"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{root / MANIFEST_FILE} is not an interir synth manifest (format field)")
    wanted = list(manifest["combinations"]) if combinations is None else list(
        parse_combinations(combinations))
    for c in wanted:
        file_in_folder(root, c, f"a combination listed in '{root / MANIFEST_FILE}'")
    suite = SyntheticSuite(root, manifest)
    problems = []
    for c in wanted:
        if c not in manifest["combinations"]:
            problems.append(f"combination {c!r} is not in the manifest {manifest['combinations']}")
            continue
        ds = PairedImageDataset(root / c, layout=("input", "target"))
        expected = sorted(r["name"] for r in manifest["images"] if r["combination"] == c)
        if sorted(ds.names) != expected:
            missing = sorted(set(expected) - set(ds.names))
            extra = sorted(set(ds.names) - set(expected))
            problems.append(f"{c}: images missing {missing} / not in manifest {extra}")
        suite.datasets[c] = ds
    if problems:
        raise ValueError(f"synthetic suite '{root}' is inconsistent:\n  " + "\n  ".join(problems))
    if combinations is not None:
        suite.manifest = dict(manifest, combinations=wanted)
    return suite


# ------------------------------------------------------------------------------------------
# the one reader of a suite's layout (eval, embed and load_synthetic_suite)


@dataclass(frozen=True)
class SuiteImage:
    """One image of a suite: ``ROOT/<combination>/input/<name>.png`` and its target.

    Attributes:
        combination: the combination folder.
        name: the image stem.
        input: the degraded image.
        target: the clean image, or None when read without targets.
        levels: the degradation levels of its manifest row (``*_level`` fields), or None.
    """

    combination: str
    name: str
    input: Path
    target: Path | None
    levels: dict[str, Any] | None


def is_suite(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a ``manifest.json`` or a known ``<combination>/input`` + ``/target``."""
    root = Path(root)
    if (root / MANIFEST_FILE).is_file():
        return True
    return any(_has_folders(root / c, True) for c in COMBINATIONS)


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of a suite, or None when there is none.

    Raises:
        ValueError: the file is not valid JSON, or not an object.
    """
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); regenerate it with `interir synth`")
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; regenerate it with `interir synth`")
    return data


def _manifest_rows(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = (manifest or {}).get("images")
    return [r for r in rows if isinstance(r, dict) and "combination" in r and "name" in r] \
        if isinstance(rows, list) else []


def _has_folders(folder: Path, targets: bool) -> bool:
    return (folder / "input").is_dir() and (not targets or (folder / "target").is_dir())


def suite_combinations(
    root: str | os.PathLike, manifest: dict[str, Any] | None, targets: bool = True
) -> list[str]:
    """The suite's combinations in :func:`combination_rank` order.

    Those its manifest lists (its ``combinations``, else those of its rows), else every folder
    holding ``input/`` (and ``target/`` with ``targets``). Folders on disk may hold more: a stale
    one from an earlier suite is not read.

    Raises:
        ValueError: the manifest lists a combination whose folders are missing, or one that is
            not a name inside ``root`` (absolute, or with ``..``).
    """
    root = Path(root)
    listed = (manifest or {}).get("combinations")
    if not isinstance(listed, list):
        listed = sorted({str(r["combination"]) for r in _manifest_rows(manifest)}) or None
    if listed is None:
        listed = [p.name for p in root.iterdir() if p.is_dir() and _has_folders(p, targets)]
    for c in listed:  # a manifest never makes a reader leave its suite
        file_in_folder(root, c, f"a combination listed in '{root / MANIFEST_FILE}'")
    missing = [c for c in map(str, listed) if not _has_folders(root / c, targets)]
    if missing:
        raise ValueError(
            f"'{root / MANIFEST_FILE}' lists combination(s) {', '.join(missing)} whose "
            f"<combination>/input{' and /target' if targets else ''} folders are missing. Fix: "
            "regenerate the suite with `interir synth ... --overwrite`"
        )
    return sorted(map(str, listed), key=combination_rank)


def read_suite(
    root: str | os.PathLike,
    targets: bool = True,
    combinations: Sequence[str] | None = None,
) -> list[SuiteImage]:
    """The images of a suite, in (combination, file name) order, with their manifest levels.

    Args:
        root: a folder written by ``interir synth`` (a manifest is optional).
        targets: pair every input with its target (checked by :func:`find_pairs`); without,
            only ``<combination>/input/`` is listed.
        combinations: read these combinations (default: :func:`suite_combinations`).
    """
    root = Path(root)
    manifest = read_manifest(root)
    levels = {(str(r["combination"]), Path(str(r["name"])).stem): _levels(r)
              for r in _manifest_rows(manifest)}
    combos = suite_combinations(root, manifest, targets) if combinations is None else combinations
    images: list[SuiteImage] = []
    for combo in combos:
        if targets:
            found = [(p.name, p.input, p.target) for p in find_pairs(root / combo, ("input", "target"))]
        else:
            found = [(f.stem, f, None) for f in list_images(root / combo / "input")]
        images.extend(SuiteImage(combo, name, inp, tgt, levels.get((combo, name)))
                      for name, inp, tgt in found)
    return images


def _levels(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k.endswith("_level") and v is not None}
