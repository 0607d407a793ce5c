"""The training engine: one loop for a laptop CPU, one GPU, or many GPUs/CPUs under torchrun.

``train(config)`` runs the paper's recipe (design §5): random clean patches with flips, degraded
on the fly by the seven-combination pipeline (or aligned patches of real degraded/clean pairs),
loss ``L1 + 0.1 L1(FFT)``, Adam with cosine annealing from ``optim.lr`` to ``optim.lr_final``,
optional gradient clipping and EMA, mixed precision on CUDA. It writes a run folder::

    runs/<name>/
      config.yaml          the resolved configuration
      run.json             interir version, git commit, seed, environment, one entry per session
      train.log            the log lines
      metrics.csv/.jsonl   training rows (loss, lr, images/s) and validation rows (PSNR, SSIM)
      tb/                  TensorBoard events (when tensorboard is installed)
      checkpoints/last/    weights + training state, every train.ckpt_every steps and at the end
      checkpoints/best/    weights with the best validation PSNR
      summary.json         final step, stop reason, best validation, throughput
      replicas.json        under torchrun: digest of every replica's weights at the end

Exact resume: every random draw is a fixed function of ``(train.seed, position)`` -- the patch
order (one permutation per epoch), each patch's crop and flips, each step's degradations (drawn
for the whole global batch; each process keeps its slice, so 1 and N processes see the same
batches) -- and
the optimizer, scheduler, scaler, EMA and global RNG states are checkpointed; so a run stopped
after ``k`` steps and resumed gives the same weights as an uninterrupted run (same machine,
same number of processes and threads).

Distributed: under ``torchrun --nproc_per_node=N`` the model is wrapped in
``DistributedDataParallel`` (NCCL on GPUs, gloo on CPU); each process gets ``batch_size / N``
samples of every global batch (a rank-aware sampler replaces ``DistributedSampler`` so the data
position can resume mid-epoch); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from interir.config import TrainConfig, ValSection, config_to_dict, config_to_yaml, load_config, validate_config
from interir.engine import checkpoint as ckpt
from interir.engine.distributed import (
    DistInfo,
    any_true,
    barrier,
    broadcast_object,
    check_replicas,
    cleanup_distributed,
    init_distributed,
    per_rank_batch,
)
from interir.engine.ema import ModelEMA
from interir.engine.evaluate import EvalDataset, EvalOptions, EvalReport, evaluate
from interir.losses import RestorationLoss
from interir.metrics.image import MetricSettings
from interir.models.unfolding import set_stage_checkpointing
from interir.utils.files import OutputPathError, check_writable_dir
from interir.utils.tensors import centre_crop
from interir.utils.seed import capture_rng_state, derive_seed, restore_rng_state, seed_everything, seeded

__all__ = ["train", "TrainResult", "build_val_pairs", "validate", "lr_factor", "RUN_FILES",
           "resume_command"]

log = logging.getLogger("interir.train")

#: Files and folders ``interir train`` writes in a run folder (``--overwrite`` removes these only).
RUN_FILES = (
    "config.yaml", "run.json", "train.log", "metrics.csv", "metrics.jsonl", "tb", "checkpoints",
    "summary.json", "replicas.json",
)
CSV_FIELDS = (
    "kind", "step", "loss", "l1", "fft", "lr", "images_per_s", "grad_norm", "psnr", "ssim",
    "val_images", "elapsed_s", "time",
)


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; files are written by rank 0 only).

    Attributes:
        run_dir: the run folder.
        step: optimizer steps done in total (across resumed sessions).
        iterations: the configured total.
        reason: ``"completed"``, ``"time_budget"``, ``"max_steps"`` or ``"signal"``.
        best: ``{"step", "psnr", "ssim"}`` of the best validation, or ``None``.
        last_checkpoint: ``run_dir/checkpoints/last``.
        images_per_s: mean training throughput of this session (global images per second, first
            log interval excluded as warm-up when there are several), or ``None``.
        replica_digests: under torchrun, the SHA-256 of each replica's weights at the end.
        world_size: number of processes.
    """

    run_dir: Path
    step: int
    iterations: int
    reason: str
    best: dict[str, Any] | None = None
    last_checkpoint: Path | None = None
    images_per_s: float | None = None
    replica_digests: list[str] | None = None
    world_size: int = 1

    @property
    def completed(self) -> bool:
        return self.step >= self.iterations

    @property
    def resume_command(self) -> str:
        """The command that continues this run (see :func:`resume_command`)."""
        return resume_command(self.run_dir, self.world_size)


def resume_command(run_dir: str | os.PathLike, world_size: int = 1) -> str:
    """The shell command that continues a run from its folder.

    The run folder's ``config.yaml`` is the resolved configuration, command-line overrides
    included, and names that same folder, so pointing ``interir train`` at the folder (not at the
    original YAML file, which lacks the overrides and may name another folder) is what works.
    """
    folder = shlex.quote(str(run_dir))
    if world_size > 1:
        return f"torchrun --nproc_per_node={world_size} -m interir.cli train {folder} --resume"
    return f"interir train {folder} --resume"


# ----------------------------------------------------------------------------------------------
# schedule


GAIN_SUFFIXES = ("update_gate", ".beta", ".gamma", "step_size")


def parameter_groups(model: nn.Module, lr: float, gain_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one group, or (``gain_lr_scale != 1``) the scalar gains that
    start at zero (names ending in :data:`GAIN_SUFFIXES`) in a second group at ``lr * scale``."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if gain_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable]}]
    gains = [p for name, p in trainable if name.endswith(GAIN_SUFFIXES)]
    rest = [p for name, p in trainable if not name.endswith(GAIN_SUFFIXES)]
    return [{"params": rest}, {"params": gains, "lr": lr * gain_lr_scale}]


def lr_factor(step: int, iterations: int, lr: float, lr_final: float, schedule: str = "cosine",
              warmup: int = 0) -> float:
    """Learning-rate multiplier after ``step`` completed steps (``lr * factor`` is the rate).

    Cosine: ``lr_final + (lr - lr_final) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1
    over ``iterations - warmup`` steps; linear warm-up from ``lr / warmup`` before it.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, iterations - warmup))
    rate = lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * t))
    return rate / lr


# ----------------------------------------------------------------------------------------------
# data


class _StreamSampler(Sampler):
    """Endless, resumable stream of ``(dataset index, sample seed)`` for one process.

    Global position ``p`` (the p-th sample the whole run draws) maps to epoch ``p // n`` and to
    ``perm_epoch[p % n]``, where ``perm_epoch`` is a permutation seeded by ``(seed, epoch)``.
    Step ``s`` uses positions ``[s * B, (s + 1) * B)``; rank ``r`` takes its ``B / N`` share.
    """

    def __init__(self, n: int, seed: int, global_batch: int, rank: int, per_rank: int, start_step: int):
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


class _SeededItems(Dataset):
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


class _PairedPatches(Dataset):
    """Aligned random ``patch x patch`` crops (and flips) of degraded/clean pairs."""

    def __init__(self, datasets: list[Dataset], patch: int, augment: bool) -> None:
        self.data = ConcatDataset(datasets)
        self.patch, self.augment = patch, augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from interir.data import pad_to_min_size

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


def _exclusions(entries: list[str]) -> set[str]:
    """Names from ``exclude`` entries: a file listing names, or a name itself."""
    from interir.data import read_exclusion_list

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


def _check_roots(roots: list[str], key: str) -> None:
    for r in roots:
        if not Path(r).exists():
            raise FileNotFoundError(
                f"{key}: '{r}' does not exist (relative paths are resolved against the current "
                f"folder '{Path.cwd()}'; the shipped configs expect the repository root)"
            )


def _training_dataset(cfg: TrainConfig) -> Dataset:
    d = cfg.data
    if d.paired_roots:
        from interir.data import PairedImageDataset

        _check_roots(d.paired_roots, "data.paired_roots")
        return _PairedPatches([PairedImageDataset(r) for r in d.paired_roots], d.patch_size, d.augment)
    from interir.data import CleanPatchDataset

    _check_roots(d.train_roots, "data.train_roots")
    exclude = _exclusions(d.exclude)
    return CleanPatchDataset(d.train_roots, d.patch_size, exclude=exclude or None, augment=d.augment)


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
    _check_roots(v.roots, f"{label}.roots")
    names = _exclusions(v.exclude)
    include = _exclusions(v.include) if v.include else None

    def wanted(name: str) -> bool:
        stem = Path(name).stem
        if name in names or stem in names or Path(name).name in names:
            return False
        return include is None or name in include or stem in include or Path(name).name in include

    pairs: list[dict[str, Any]] = []
    if v.kind == "paired":
        from interir.data import PairedImageDataset

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

    from interir.data import SyntheticPairDataset, quantize8
    from interir.degradations import COMBINATIONS
    from interir.utils.io import list_images, read_image

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
                                 haze_depth=v.haze_depth, haze_airlight=v.haze_airlight)
    total = len(files) * len(combos)
    count = min(v.limit or total, total)
    seen: set[tuple[int, int]] = set()
    k = 0
    while len(pairs) < count:
        fi, ci = k % len(files), k % len(combos)
        if (fi, ci) in seen:  # cycles collide when lcm(#images, #combinations) < limit
            fi = (fi + k // math.lcm(len(files), len(combos))) % len(files)
        k += 1
        if (fi, ci) in seen:
            continue
        seen.add((fi, ci))
        f, combo = files[fi], synth.combinations[ci]
        clean = centre_crop(read_image(f).image, v.crop).contiguous()
        degraded, _ = synth.degrade(clean, combo, f.stem)
        pairs.append({"name": f"{combo}/{f.stem}", "input": degraded, "target": quantize8(clean)})
    return pairs


def validate(
    model: nn.Module,
    pairs: list[dict[str, Any]],
    device: torch.device,
    y_channel: bool = False,
    crop_border: int = 0,
    autocast: Any = None,
) -> dict[str, float]:
    """Mean PSNR/SSIM of ``model`` on fixed pairs, scored by :func:`interir.engine.evaluate.evaluate`
    (output clamped to [0, 1]; a PSNR above 100 dB, e.g. identical images, counts as 100).

    Returns:
        ``{"psnr", "ssim", "val_images", "seconds", "sets"}``; ``"sets"`` maps each pair's
        ``"set"`` (0 when absent) to that set's mean ``{"psnr", "ssim", "val_images"}``.
    """
    settings = MetricSettings(y_channel=y_channel, crop_border=crop_border)
    options = EvalOptions(settings=settings, device=str(device), log_every=0, autocast=autocast)
    was_training = model.training
    t0 = time.perf_counter()
    try:
        report = evaluate({"model": model}, validation_datasets(pairs), options)
    finally:
        model.train(was_training)
    return dict(validation_scores(report, "model"), seconds=time.perf_counter() - t0)


def validation_datasets(pairs: list[dict[str, Any]]) -> list[EvalDataset]:
    """One in-memory :class:`EvalDataset` per ``"set"`` of the pairs (named ``set<k>``)."""
    sets = sorted({int(pair.get("set", 0)) for pair in pairs})
    return [EvalDataset.from_pairs(f"set{k}", [p for p in pairs if int(p.get("set", 0)) == k])
            for k in sets]


def validation_scores(report: EvalReport, label: str) -> dict[str, Any]:
    """Mean PSNR/SSIM of model ``label`` over a report of :func:`validation_datasets`, overall
    and per set (PSNR capped at 100 dB)."""
    rows = [r for r in report.results if r.model == label]
    ps = [min(r.output_psnr, 100.0) for r in rows]
    ss = [r.output_ssim for r in rows]
    sets: dict[int, dict[str, float]] = {}
    for name in dict.fromkeys(r.dataset for r in rows):
        mine = [i for i, r in enumerate(rows) if r.dataset == name]
        sets[int(name.removeprefix("set"))] = {
            "psnr": sum(ps[i] for i in mine) / len(mine),
            "ssim": sum(ss[i] for i in mine) / len(mine), "val_images": len(mine)}
    n = max(1, len(ps))
    return {"psnr": sum(ps) / n, "ssim": sum(ss) / n, "val_images": len(ps), "sets": sets}


def per_set_text(result: dict[str, Any], ssim: bool = False) -> str:
    """``"  [set 0: 21.76, set 1: 21.77]"`` for a :func:`validate` result of several sets, else ``""``."""
    sets = result.get("sets", {})
    if len(sets) < 2:
        return ""
    cells = [f"set {k}: {v['psnr']:.3f}" + (f" / {v['ssim']:.4f}" if ssim else "") for k, v in sets.items()]
    return "  [" + ", ".join(cells) + "]"


# ----------------------------------------------------------------------------------------------
# logging, metrics files


class _MetricsLog:
    """Rows to ``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard), on rank 0."""

    def __init__(self, run_dir: Path, tensorboard: str, resume_step: int | None) -> None:
        self.csv_path, self.jsonl_path = run_dir / "metrics.csv", run_dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._jsonl = open(self.jsonl_path, "a")
        self._tb = None
        if tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError as e:
                if tensorboard == "on":
                    raise ImportError(
                        'output.tensorboard=on needs the tensorboard package: pip install "interir[log]"'
                    ) from e
                log.debug("tensorboard not installed; metrics go to CSV/JSONL only")

    def _truncate(self, step: int) -> None:
        """Drop rows logged after ``step`` by an interrupted session (they will be redone)."""
        if self.jsonl_path.exists():
            keep = [ln for ln in _jsonl_rows(self.jsonl_path)
                    if json.loads(ln).get("step", 0) <= step]
            ckpt.atomic_write_text(self.jsonl_path, "".join(ln + "\n" for ln in keep))
        if self.csv_path.exists():
            rows = [r for r in _csv_rows(self.csv_path) if int(r["step"]) <= step]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            ckpt.atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        row = {"kind": kind, "step": step, **values, "time": round(time.time(), 3)}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        exact = ("time", "elapsed_s")
        self._csv.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k not in exact else v)
                            for k, v in row.items()})
        self._csv_file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("elapsed_s",):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        self._csv_file.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _complete_lines(path: Path) -> list[str]:
    """The lines of a log file, without a torn last line (no newline: the writer was killed or
    the disk was full), which is dropped with a warning; that row is redone on resume anyway."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        log.warning("%s: dropping its last line, cut short by an interrupted write: %r", path,
                    lines[-1][:80])
        lines.pop()
    return [ln.rstrip("\r\n") for ln in lines]


def _bad_row(path: Path, number: int, problem: str) -> ValueError:
    return ValueError(
        f"{path}, line {number}: {problem}; the file was damaged. Fix: delete that line (and any "
        "after it) and run again with --resume"
    )


def _jsonl_rows(path: Path) -> list[str]:
    """The non-empty, valid JSON lines of ``metrics.jsonl`` (a torn last line dropped)."""
    rows = []
    for number, line in enumerate(_complete_lines(path), 1):
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise _bad_row(path, number, f"not a JSON row ({e})") from None
        rows.append(line)
    return rows


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` (a torn last line dropped), each with an integer step."""
    rows = list(csv.DictReader(_complete_lines(path)))
    for number, row in enumerate(rows, 2):
        try:
            int(row.get("step") or "")
        except ValueError:
            raise _bad_row(path, number, f"step {row.get('step')!r} is not a number") from None
    return rows


class _Progress:
    """A rich progress bar on a terminal (rank 0), nothing otherwise (log lines do the job)."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.bar = None
        self.console = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[ips]} img/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.task = self.bar.add_task("train", total=total, completed=start, loss="-", lr="-", ips="-")

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, step: int, **fields: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **fields)


@contextlib.contextmanager
def _logging(run_dir: Path | None, is_main: bool, console=None) -> Iterator[None]:
    """Route the ``interir`` loggers to ``train.log`` and the terminal for this run."""
    logger = logging.getLogger("interir")
    saved = (logger.level, logger.propagate)
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if is_main and run_dir is not None:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(fmt)
        handlers.append(fh)
    if console is not None:
        from rich.logging import RichHandler

        ch: logging.Handler = RichHandler(console=console, show_path=False, show_level=False)
    else:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(logging.Formatter(
            "%(asctime)s %(message)s" if is_main else "%(asctime)s [rank %(rank)s] %(levelname)s %(message)s",
            "%H:%M:%S",
        ))
        ch.addFilter(_RankFilter())
    ch.setLevel(logging.INFO if is_main else logging.WARNING)
    handlers.append(ch)
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = os.environ.get("RANK", "0")
        return True


class _StopFlag:
    """SIGINT/SIGTERM request a clean stop (checkpoint at the next step); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("received %s: stopping after this step with a checkpoint (Ctrl-C again to abort)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------
# the run


def _amp(cfg: TrainConfig, device: torch.device):
    """``(autocast factory or None, GradScaler or None, description)``."""
    if device.type != "cuda" or cfg.train.amp == "off":
        return None, None, "off"
    mode = cfg.train.amp
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16

    def factory():
        return torch.autocast(device_type="cuda", dtype=dtype)

    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    return factory, scaler, mode


def _failed_at_start(run_dir: Path) -> bool:
    """True when the run folder holds nothing a run produced: no checkpoint (nor a leftover of
    one), no metrics row, no summary -- what a run that failed at start-up (a missing data
    folder, a bad train.init_from) or before its first row leaves. Such a folder is reused."""
    checkpoints = run_dir / "checkpoints"
    if (checkpoints.is_dir() and any(checkpoints.iterdir())) or (run_dir / "summary.json").exists():
        return False
    jsonl, table = run_dir / "metrics.jsonl", run_dir / "metrics.csv"
    if jsonl.is_file() and jsonl.read_text(errors="replace").strip():
        return False
    return not (table.is_file() and len(table.read_text(errors="replace").splitlines()) > 1)


def _remove_run_files(run_dir: Path) -> None:
    """Delete what ``interir train`` writes in a run folder (and nothing else)."""
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool | str, overwrite: bool) -> str | None:
    """Check the run folder (rank 0); return an error message or None."""
    try:
        check_writable_dir(run_dir, "run folder")
    except OutputPathError as err:
        return f"{err} (output.dir / output.name)"
    last = ckpt.recover_dir(run_dir / "checkpoints" / "last")
    if resume:
        src = last if resume is True else Path(resume)
        if (ckpt.recover_dir(src) / ckpt.STATE_FILE).is_file():
            return None
        if resume is True and run_dir.is_dir() and _failed_at_start(run_dir):
            return (f"nothing to resume: the run in '{run_dir}' stopped before its first "
                    "checkpoint (its train.log says why). Fix: start it again without --resume; "
                    "the folder is reused")
        return (f"nothing to resume: '{src}' holds no {ckpt.STATE_FILE}. Fix: check output.dir/"
                f"output.name (run folder '{run_dir}'), or start a new run without --resume")
    existing = [n for n in RUN_FILES if (run_dir / n).exists()]
    if existing and not overwrite and not _failed_at_start(run_dir):
        what = "a checkpoint" if last.exists() else "files of an earlier run"
        return (f"run folder '{run_dir}' already holds {what} ({', '.join(existing)}). Fix: add --resume to "
                f"continue it, --overwrite to start over, or choose another output.name")
    return None


def _write_run_info(run_dir: Path, cfg: TrainConfig, dist_info: DistInfo, session: dict[str, Any]) -> None:
    from interir import __version__
    from interir.utils.env import environment_info, git_info

    path = run_dir / "run.json"
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError:
            info = {}
    if not info:
        info = {
            "interir_version": __version__,
            "git": git_info(),
            "seed": cfg.train.seed,
            "model": cfg.model.name,
            "created": session["started"],
            "sessions": [],
        }
    session = {
        **session,
        "interir_version": __version__,
        "git": git_info(),
        "world_size": dist_info.world_size,
        "backend": dist_info.backend,
        "device": str(dist_info.device),
        "environment": environment_info(),
        "command": sys.argv,
    }
    info.setdefault("sessions", []).append(session)
    ckpt.atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _as_config(config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return validate_config(config)
    return load_config(config)


def train(
    config: TrainConfig | dict | str | os.PathLike,
    *,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Train a model as ``config`` says (see the module docstring for what is written).

    Args:
        config: a :class:`interir.config.TrainConfig`, a dict, or a YAML path.
        resume: continue the run folder's ``checkpoints/last`` (``True``), or a given checkpoint
            folder (a path), restoring weights, optimizer, schedule, data position and RNG states.
        overwrite: delete an earlier run's files in the run folder instead of refusing to start.
        max_steps: stop this session after this many steps (with a checkpoint), e.g. for smoke
            tests; the schedule still spans ``train.iterations``.

    Returns:
        A :class:`TrainResult`.

    Raises:
        FileExistsError / FileNotFoundError: the run folder is taken, or there is nothing to resume.
        ckpt.CheckpointError: the checkpoint to resume belongs to another architecture.
        ValueError: the global batch does not split over the processes; invalid data.
        FloatingPointError: the loss became NaN/inf.
    """
    cfg = _as_config(config)
    t_cfg = cfg.train
    old_threads = torch.get_num_threads()
    if t_cfg.threads:
        torch.set_num_threads(t_cfg.threads)
    dist_info = init_distributed(t_cfg.device)
    try:
        return _train(cfg, dist_info, resume, overwrite, max_steps)
    finally:
        cleanup_distributed()
        torch.set_num_threads(old_threads)


def _train(cfg: TrainConfig, di: DistInfo, resume, overwrite: bool, max_steps: int | None) -> TrainResult:
    t_cfg, device = cfg.train, di.device
    session_start = time.time()
    run_dir = Path(cfg.output.dir) / (cfg.output.name or "run")
    per_rank = per_rank_batch(t_cfg.batch_size, di.world_size)

    # --- run folder (rank 0 decides, everyone agrees) ---------------------------------------
    problem = None
    if di.is_main:
        problem = _prepare_run_dir(cfg, run_dir, resume, overwrite)
        if problem is None and not resume and (overwrite or _failed_at_start(run_dir)):
            _remove_run_files(run_dir)
        if problem is None:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    problem = broadcast_object(problem)
    if problem is not None:
        raise (FileNotFoundError if resume else FileExistsError)(problem)

    tty = di.is_main and sys.stderr.isatty()
    progress = _Progress(tty, t_cfg.iterations, 0)
    with _logging(run_dir if di.is_main else None, di.is_main, progress.console), _StopFlag() as stop_flag:
        return _run(cfg, di, run_dir, per_rank, resume, max_steps, progress, stop_flag, session_start)



def training_pipeline(cfg: TrainConfig) -> "DegradationPipeline":
    """The on-the-fly degradation pipeline of a synthetic-data run: combinations, level ranges,
    airlight range, rain style (``data.rain_style``), level power and clean fraction of ``cfg``."""
    from interir.degradations import COMBINATIONS, DegradationPipeline, HazeSampling

    return DegradationPipeline(
        cfg.data.combinations or COMBINATIONS, cfg.data.max_levels, rng_device=cfg.data.degrade_rng,
        haze_sampling=HazeSampling(airlight=tuple(cfg.data.haze_airlight)),
        rain_sampling=cfg.data.rain_style,
        level_power=cfg.data.level_power,
        clean_fraction=cfg.data.clean_fraction,
    )

def _run(cfg, di: DistInfo, run_dir: Path, per_rank: int, resume, max_steps, progress: _Progress,
         stop_flag: _StopFlag, session_start: float) -> TrainResult:
    t_cfg, o_cfg, device = cfg.train, cfg.optim, di.device
    if di.is_main:  # here, so that train.log records it
        for name in ("last", "best"):
            for stale in ckpt.clean_interrupted_writes(run_dir / "checkpoints" / name):
                log.warning("deleted %s, left by an interrupted checkpoint write", stale)
    barrier()  # the other processes read checkpoints/last only once it is back in place
    seed_everything(t_cfg.seed, deterministic=t_cfg.deterministic)
    if device.type == "cuda" and not t_cfg.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
    from interir.registry import create_model

    model = create_model(cfg.model.name, **cfg.model.overrides)
    if t_cfg.checkpoint_stages and not set_stage_checkpointing(model, True):
        raise ValueError(f"train.checkpoint_stages=true: model {cfg.model.name!r} has no unfolded "
                         "stages to checkpoint; set it to false")
    if t_cfg.init_from:
        left = ckpt.load_weights_into(model, t_cfg.init_from, use_ema=True, allow_missing=t_cfg.init_missing_ok)
        log.info("initialised weights from %s", t_cfg.init_from)
        if left:
            log.info("  kept at their initialisation (not in %s): %s", t_cfg.init_from, ", ".join(left))
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())

    params = [p for p in model.parameters() if p.requires_grad]  # clipped together
    opt_cls = torch.optim.AdamW if o_cfg.name == "adamw" else torch.optim.Adam
    optimizer = opt_cls(parameter_groups(model, o_cfg.lr, o_cfg.gain_lr_scale), lr=o_cfg.lr,
                        betas=tuple(o_cfg.betas), eps=o_cfg.eps, weight_decay=o_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, t_cfg.iterations, o_cfg.lr, o_cfg.lr_final, o_cfg.schedule,
                            o_cfg.warmup_iters),
    )
    autocast, scaler, amp_mode = _amp(cfg, device)
    ema = ModelEMA(model, t_cfg.ema_decay) if t_cfg.ema_decay else None
    criterion = RestorationLoss(cfg.loss.fft_weight, cfg.loss.fft_norm, cfg.loss.pixel)

    # --- resume -------------------------------------------------------------------------------
    start_step, best, elapsed_before, rng_state = 0, None, 0.0, None
    if resume:
        src = run_dir / "checkpoints" / "last" if resume is True else Path(resume)
        src = ckpt.recover_dir(src)
        checkpoint = ckpt.load_checkpoint(src, map_location="cpu")
        ckpt.load_weights_into(model, checkpoint)
        state = ckpt.load_training_state(src, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
        extra = state.get("extra", {})
        if ema is not None:
            if checkpoint.ema_state_dict is not None:
                ema.load_state_dict(checkpoint.ema_state_dict,
                                    updates=int(extra.get("ema_updates", start_step)))
            else:
                log.warning("the checkpoint has no EMA weights; the average restarts from the "
                            "current weights")
        best = extra.get("best")
        elapsed_before = float(extra.get("elapsed_s", 0.0))
        rng_state = extra.get("rng")
        if extra.get("world_size", di.world_size) != di.world_size:
            log.warning("resuming with %d processes where the checkpoint used %s: same data and degradations, "
                        "but gradient sums are reduced in another order (results differ by rounding)",
                        di.world_size, extra.get("world_size"))
        _compare_saved_config(run_dir, cfg)

    # --- data ---------------------------------------------------------------------------------
    from interir.degradations import patch_depth

    dataset = _training_dataset(cfg)
    paired = bool(cfg.data.paired_roots)
    pipeline = None if paired else training_pipeline(cfg)
    gen_device = device if cfg.data.degrade_rng == "same" else torch.device("cpu")
    degrade_gen = torch.Generator(device=gen_device)
    sampler = _StreamSampler(len(dataset), t_cfg.seed, t_cfg.batch_size, di.rank, per_rank, start_step)
    loader = DataLoader(
        _SeededItems(dataset), batch_size=per_rank, sampler=sampler, num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(t_cfg.seed),
    )
    val_pairs = build_val_pairs(cfg) if di.is_main else []

    train_model: nn.Module = model
    if di.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device] if device.type == "cuda" else None)
    eval_model = copy.deepcopy(model).eval() if (ema is not None and di.is_main) else None

    if rng_state is not None:
        restore_rng_state(rng_state)

    metrics = None
    if di.is_main:
        metrics = _MetricsLog(run_dir, cfg.output.tensorboard, start_step if resume else None)
        # Only now, with every start-up step done: a session that fails to start (missing data,
        # a damaged metrics file) records nothing and leaves the run as it was.
        ckpt.atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
        _write_run_info(run_dir, cfg, di, {
            "started": datetime.fromtimestamp(session_start, timezone.utc).isoformat(timespec="seconds"),
            "resumed_from_step": start_step if resume else None,
        })
    log.info(
        "run %s: %s (%.3f M params) on %s x%d%s, %s %d images, patch %d, batch %d (%d per process), "
        "%d iterations%s, amp %s",
        run_dir, cfg.model.name, n_params / 1e6, device, di.world_size,
        f" ({di.backend})" if di.backend else "", "paired" if paired else "clean", len(dataset),
        cfg.data.patch_size, t_cfg.batch_size, per_rank, t_cfg.iterations,
        f", resuming at step {start_step}" if resume else "", amp_mode,
    )
    if val_pairs:
        kinds = "+".join(sorted({v.kind for v in cfg.data.val_sets}))
        log.info("validation: %d %s pairs every %s steps", len(val_pairs), kinds, t_cfg.val_every or "(end only)")

    # --- helpers ------------------------------------------------------------------------------
    budget_s = t_cfg.max_minutes * 60.0 if t_cfg.max_minutes else None
    last_saved_step = start_step if resume else -1
    last_val_step = -1
    last_val: dict[str, float] = {}

    def run_validation(step: int) -> None:
        nonlocal best, last_val_step, last_val
        if not di.is_main or not val_pairs:
            return
        net = model
        if ema is not None:
            ema.copy_to(eval_model)
            net = eval_model
        convention = cfg.data.val_sets[0]
        res = validate(net, val_pairs, device, convention.y_channel, convention.crop_border, autocast)
        last_val_step, last_val = step, {"psnr": res["psnr"], "ssim": res["ssim"]}
        improved = best is None or res["psnr"] > best["psnr"]
        log.info("validation step %d: PSNR %.3f dB  SSIM %.4f  (%d images, %.1fs)%s%s", step, res["psnr"],
                 res["ssim"], res["val_images"], res["seconds"], per_set_text(res), "  [best]" if improved else "")
        row = {"psnr": res["psnr"], "ssim": res["ssim"], "val_images": res["val_images"]}
        if len(res["sets"]) > 1:
            row.update({f"psnr_set{k}": v["psnr"] for k, v in res["sets"].items()})
        metrics.write("val", step, row)
        if improved:
            best = {"step": step, "psnr": res["psnr"], "ssim": res["ssim"]}
            ckpt.save_checkpoint(run_dir / "checkpoints" / "best", model,
                                 ema=ema.state_dict() if ema is not None else None, step=step, metrics=best)

    def save_last(step: int, elapsed: float) -> None:
        nonlocal last_saved_step
        if di.is_main:
            extra = {
                "rng": capture_rng_state(),
                "best": best,
                "ema_updates": ema.updates if ema is not None else 0,
                "elapsed_s": elapsed,
                "world_size": di.world_size,
                "global_batch": t_cfg.batch_size,
                "seed": t_cfg.seed,
            }
            ckpt.save_checkpoint(
                run_dir / "checkpoints" / "last", model, ema=ema.state_dict() if ema is not None else None,
                optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=step, extra_state=extra,
                metrics={"val": last_val, "val_step": last_val_step} if last_val else {},
            )
        last_saved_step = step

    # --- loop ---------------------------------------------------------------------------------
    train_model.train()
    step = start_step
    reason = "completed"
    loss_sum = torch.zeros(3, device=device)  # total, l1, fft
    interval_steps, grad_norm = 0, None
    t_interval = time.perf_counter()
    train_time = 0.0  # this session, excluding validation and checkpoint writing
    rates: list[float] = []
    data_iter = iter(loader)
    with progress:
        while step < t_cfg.iterations:
            t_step = time.perf_counter()
            batch = next(data_iter)
            if isinstance(batch, dict):
                inputs = batch["input"].to(device, non_blocking=True)
                target = batch["target"].to(device, non_blocking=True)
            else:
                target = batch.to(device, non_blocking=True)
                # Parameters are drawn for the whole global batch and each process keeps its slice,
                # so N processes see exactly the batch a single process would.
                degrade_gen.manual_seed(derive_seed(t_cfg.seed, "degrade", step))
                with torch.no_grad():
                    dparams = pipeline.sample(t_cfg.batch_size, degrade_gen, device)
                    mine = list(range(di.rank * per_rank, (di.rank + 1) * per_rank))
                    depth = patch_depth(
                        t_cfg.batch_size, target.shape[-2], target.shape[-1], degrade_gen,
                        cfg.data.haze_depth, clean=target, rows=mine,
                    )
                    if di.distributed:
                        dparams = dparams.select(mine)
                    inputs = pipeline.apply(target, dparams, None if depth is None else depth.to(device))
            with autocast() if autocast is not None else contextlib.nullcontext():
                pred = train_model(inputs)
            loss, parts = criterion(pred, target, return_parts=True)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            if o_cfg.grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, o_cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            step += 1
            interval_steps += 1
            loss_sum += torch.stack([loss.detach().float(), parts["l1"].float(), parts["fft"].float()])
            train_time += time.perf_counter() - t_step
            progress.update(step)

            if step % t_cfg.log_every == 0 or step == t_cfg.iterations:
                if di.distributed:
                    torch.distributed.all_reduce(loss_sum)
                    loss_sum /= di.world_size
                mean = (loss_sum / interval_steps).tolist()
                if not all(math.isfinite(v) for v in mean):
                    raise FloatingPointError(
                        f"the loss became {mean[0]} at step {step}. Fix: lower optim.lr, set optim.grad_clip "
                        f"(e.g. 0.01), or train.amp=bf16/off; resume from the last checkpoint with --resume"
                    )
                now = time.perf_counter()
                ips = t_cfg.batch_size * interval_steps / max(now - t_interval, 1e-9)
                rates.append(ips)
                lr_now = optimizer.param_groups[0]["lr"]
                elapsed = elapsed_before + train_time
                eta = (t_cfg.iterations - step) * t_cfg.batch_size / max(ips, 1e-9)
                row = {"loss": mean[0], "l1": mean[1], "fft": mean[2], "lr": lr_now, "images_per_s": ips,
                       "elapsed_s": round(elapsed, 3)}
                if grad_norm is not None:
                    row["grad_norm"] = float(grad_norm)
                if di.is_main:
                    metrics.write("train", step, row)
                    progress.update(step, loss=f"{mean[0]:.4f}", lr=f"{lr_now:.2e}", ips=f"{ips:.1f}")
                    if progress.bar is None:
                        log.info("step %d/%d  loss %.4f (l1 %.4f fft %.3f)  lr %.2e  %.1f img/s  eta %s",
                                 step, t_cfg.iterations, mean[0], mean[1], mean[2], lr_now, ips,
                                 _format_eta(eta))
                loss_sum.zero_()
                interval_steps = 0
                t_interval = time.perf_counter()

            if t_cfg.val_every and step % t_cfg.val_every == 0 and step < t_cfg.iterations:
                run_validation(step)
                t_interval = time.perf_counter()
            if t_cfg.ckpt_every and step % t_cfg.ckpt_every == 0 and step < t_cfg.iterations:
                save_last(step, elapsed_before + train_time)
                t_interval = time.perf_counter()

            # stop requests: the same decision on every process
            local_stop = None
            if stop_flag.requested:
                local_stop = "signal"
            elif budget_s is not None and (
                time.time() - session_start + train_time / max(1, step - start_step) >= budget_s
            ):
                local_stop = "time_budget"
            elif max_steps is not None and step - start_step >= max_steps:
                local_stop = "max_steps"
            if step < t_cfg.iterations and any_true(local_stop is not None, device):
                reason = local_stop or "signal"
                if di.distributed:
                    reason = broadcast_object(reason)
                break

        del data_iter
        elapsed = elapsed_before + train_time
        # Validate at the end of the schedule only: a run interrupted and resumed then logs exactly
        # what an uninterrupted one does (same rows, same best checkpoint).
        if reason == "completed" and last_val_step != step:
            run_validation(step)
        if last_saved_step != step:
            save_last(step, elapsed)

    # --- end ----------------------------------------------------------------------------------
    digests = None
    if di.distributed and t_cfg.check_replicas:
        digests = check_replicas(model)
        same = len(set(digests)) == 1
        if di.is_main:
            report = {"step": step, "world_size": di.world_size, "identical": same, "sha256": digests}
            ckpt.atomic_write_text(run_dir / "replicas.json", json.dumps(report, indent=2) + "\n")
        if not same:
            raise RuntimeError(f"the {di.world_size} replicas' weights differ after step {step}: {digests}")
        log.info("replica check: all %d processes hold identical weights", di.world_size)
    session_ips = None
    if rates:
        session_ips = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else rates[0]
    result = TrainResult(
        run_dir=run_dir, step=step, iterations=t_cfg.iterations, reason=reason, best=best,
        last_checkpoint=run_dir / "checkpoints" / "last", images_per_s=session_ips,
        replica_digests=digests, world_size=di.world_size,
    )
    if di.is_main:
        metrics.close()
        summary = {
            "step": step, "iterations": t_cfg.iterations, "reason": reason, "best": best,
            "last_val": last_val or None, "images_per_s": session_ips, "world_size": di.world_size,
            "train_seconds": round(elapsed, 3), "model": cfg.model.name,
        }
        ckpt.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if reason == "completed":
            log.info("done: %d steps in %s%s", step, _format_eta(elapsed),
                     f", best PSNR {best['psnr']:.3f} dB at step {best['step']}" if best else "")
        else:
            log.info("stopped (%s) at step %d/%d with a checkpoint; continue with: %s",
                     reason.replace("_", " "), step, t_cfg.iterations,
                     resume_command(run_dir, di.world_size))
    barrier()
    return result


def _compare_saved_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Warn about settings that changed since the run folder's config was written."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        from omegaconf import OmegaConf

        saved = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # pragma: no cover - unreadable file: nothing to compare
        return
    now = config_to_dict(cfg)

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and k != "overrides":
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(saved), flat(now)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if changed:
        log.warning("resuming with changed settings (optimizer and schedule state come from the "
                    "checkpoint): %s",
                    ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed))
