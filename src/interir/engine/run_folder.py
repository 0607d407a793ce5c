"""The run folder ``<output.dir>/<output.name>``: checking it, and the files that describe a run.

- :func:`open_run_folder` - rank 0 locks the folder (``.interir-train.lock``: a second
  ``interir train`` of the same run is refused while the first runs), checks it (taken? anything
  to resume?), clears a failed start or an overwritten run, and every process gets its verdict.
- :func:`resume_source` / :func:`clean_interrupted_writes` - the checkpoint a resume reads, and
  the leftovers of interrupted checkpoint writes.
- :func:`write_session_start` - ``config.yaml`` and ``run.json`` (one entry per session).
- :func:`compare_saved_config` - the settings a resumed session changed.
- :func:`write_json` - ``summary.json``, ``replicas.json``.
- :func:`resume_command` - the shell command that continues a run.

The metric files and ``train.log`` are :mod:`interir.engine.metric_log`'s; ``checkpoints/`` is
written by :mod:`interir.engine.checkpoint`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the folder is not locked there
    fcntl = None  # type: ignore[assignment]

from omegaconf import OmegaConf

from interir._version import __version__
from interir.config import ConfigError, TrainConfig, config_to_dict, config_to_yaml, validate_config
from interir.engine import checkpoint as ckpt
from interir.engine.distributed import DistInfo, broadcast_object
from interir.utils.env import environment_info, git_info
from interir.utils.files import OutputPathError, check_writable_dir

__all__ = ["RUN_FILES", "LOCK_FILE", "run_folder", "open_run_folder", "lock_run_folder",
           "check_run_folder", "failed_at_start", "remove_run_files", "resume_source", "clean_interrupted_writes", "write_session_start",
           "write_run_info", "compare_saved_config", "write_json", "resume_command"]

log = logging.getLogger("interir.train")

#: Files and folders ``interir train`` writes in a run folder (``--overwrite`` removes these only).
RUN_FILES = (
    "config.yaml", "run.json", "train.log", "metrics.csv", "metrics.jsonl", "tb", "checkpoints",
    "summary.json", "replicas.json",
)


#: Held (``flock``) by the ``interir train`` session that uses the folder; never deleted, since
#: deleting a lock file races with the next session taking it.
LOCK_FILE = ".interir-train.lock"


def run_folder(cfg: TrainConfig) -> Path:
    """``output.dir / output.name`` (``run`` when unnamed)."""
    return Path(cfg.output.dir) / (cfg.output.name or "run")


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


def open_run_folder(run_dir: Path, resume: bool | str | os.PathLike, overwrite: bool,
                    is_main: bool) -> IO[str] | None:
    """Rank 0 locks the folder (:func:`lock_run_folder`), checks it (:func:`check_run_folder`),
    removes a failed start's or an overwritten run's files and creates ``checkpoints/``; every
    process raises its verdict.

    Returns:
        The lock (rank 0; None elsewhere or where locks are unavailable): close it when the
        session ends.

    Raises:
        FileNotFoundError: ``resume`` and nothing to resume.
        FileExistsError: the folder holds a run and neither ``resume`` nor ``overwrite``, or
            another ``interir train`` is using it.
    """
    problem, lock = None, None
    if is_main:
        if run_dir.is_dir():  # locked first, so that a folder in use says so
            lock, problem = lock_run_folder(run_dir)
        problem = problem or check_run_folder(run_dir, resume, overwrite)
        if problem is None and lock is None:  # a new folder is created only for a valid session
            lock, problem = lock_run_folder(run_dir)
            problem = problem or check_run_folder(run_dir, resume, overwrite)
        if problem is None and not resume and (overwrite or failed_at_start(run_dir)):
            remove_run_files(run_dir)
        if problem is None:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    problem = broadcast_object(problem)
    if problem is not None:
        if lock is not None:
            lock.close()
        in_use = problem.startswith("run folder") and "in use" in problem
        raise (FileNotFoundError if resume and not in_use else FileExistsError)(problem)
    return lock


def lock_run_folder(run_dir: Path) -> tuple[IO[str] | None, str | None]:
    """Take the run folder's exclusive lock (created with the folder when missing).

    Returns:
        ``(lock, None)``, or ``(None, problem)`` when the folder cannot be written or another
        process holds the lock (the message names its process id and the fix).
    """
    try:
        check_writable_dir(run_dir, "run folder")
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    except (OutputPathError, OSError) as err:
        return None, f"{err} (output.dir / output.name)"
    if fcntl is None:
        return lock, None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        return None, (f"run folder '{run_dir}' is in use by another interir train (process "
                      f"{holder}); two sessions would mix their metrics and checkpoints. Fix: "
                      "wait for it to finish (or stop it), or choose another output.name")
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock, None


def check_run_folder(run_dir: Path, resume: bool | str | os.PathLike, overwrite: bool) -> str | None:
    """What stops a session from using ``run_dir`` (an error message with its fix), or ``None``."""
    try:
        check_writable_dir(run_dir, "run folder")
    except OutputPathError as err:
        return f"{err} (output.dir / output.name)"
    last = ckpt.recover_dir(run_dir / "checkpoints" / "last")
    if resume:
        src = resume_source(run_dir, resume)
        if (src / ckpt.STATE_FILE).is_file():
            return None
        if resume is True and run_dir.is_dir() and failed_at_start(run_dir):
            return (f"nothing to resume: the run in '{run_dir}' stopped before its first "
                    "checkpoint (its train.log says why). Fix: start it again without --resume; "
                    "the folder is reused")
        src = last if resume is True else Path(resume)
        return (f"nothing to resume: '{src}' holds no {ckpt.STATE_FILE}. Fix: check output.dir/"
                f"output.name (run folder '{run_dir}'), or start a new run without --resume")
    existing = [n for n in RUN_FILES if (run_dir / n).exists()]
    if existing and not overwrite and not failed_at_start(run_dir):
        what = "a checkpoint" if last.exists() else "files of an earlier run"
        return (f"run folder '{run_dir}' already holds {what} ({', '.join(existing)}). Fix: add "
                f"--resume to continue it, --overwrite to start over, or choose another output.name")
    return None


def failed_at_start(run_dir: Path) -> bool:
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


def remove_run_files(run_dir: Path) -> None:
    """Delete what ``interir train`` writes in a run folder (and nothing else)."""
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def resume_source(run_dir: Path, resume: bool | str | os.PathLike) -> Path:
    """The checkpoint folder a resume reads: ``checkpoints/last`` (``resume=True``) or the
    given folder, or the complete copy an interrupted checkpoint write left of it."""
    src = run_dir / "checkpoints" / "last" if resume is True else Path(resume)
    return ckpt.recover_dir(src)


def clean_interrupted_writes(run_dir: Path) -> None:
    """Delete the leftovers of interrupted writes of ``checkpoints/last`` and ``best`` (rank 0,
    before any process reads them), restoring a checkpoint caught mid-swap first."""
    for name in ("last", "best"):
        for stale in ckpt.clean_interrupted_writes(run_dir / "checkpoints" / name):
            log.warning("deleted %s, left by an interrupted checkpoint write", stale)


def write_session_start(run_dir: Path, cfg: TrainConfig, dist_info: DistInfo, started: float,
                        resumed_from: int | None) -> None:
    """``config.yaml`` (the resolved configuration) and this session's entry in ``run.json``."""
    ckpt.atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    write_run_info(run_dir, cfg, dist_info, {
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "resumed_from_step": resumed_from,
    })


def write_run_info(run_dir: Path, cfg: TrainConfig, dist_info: DistInfo,
                   session: dict[str, Any]) -> None:
    """Append ``session`` (with version, git state, environment, command) to ``run.json``."""
    path = run_dir / "run.json"
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError:
            info = {}
    version = __version__
    if not info:
        info = {"interir_version": version, "git": git_info(), "seed": cfg.train.seed,
                "model": cfg.model.name, "created": session["started"], "sessions": []}
    session = {
        **session,
        "interir_version": version,
        "git": git_info(),
        "world_size": dist_info.world_size,
        "backend": dist_info.backend,
        "device": str(dist_info.device),
        "environment": environment_info(),
        "command": sys.argv,
    }
    info.setdefault("sessions", []).append(session)
    ckpt.atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")


def compare_saved_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Warn about settings that changed since the run folder's config was written."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # pragma: no cover - unreadable file: nothing to compare
        return
    try:  # as read today: keys moved since (model.overrides.checkpoint_stages) are not changes
        saved = config_to_dict(validate_config(saved))
    except ConfigError:
        pass
    a, b = _flat(saved), _flat(config_to_dict(cfg))
    where = (Path(str(a.get("output.dir"))) / str(a.get("output.name")), run_dir)
    if os.path.abspath(where[0]) != os.path.abspath(where[1]):
        log.warning("the run folder's config.yaml names '%s', not this folder (it was copied or "
                    "moved, or output.dir is relative to another working folder); this session "
                    "trains '%s' and records that in config.yaml", *where)
        a.update({"output.dir": b.get("output.dir"), "output.name": b.get("output.name")})
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if changed:
        log.warning("resuming with changed settings (optimizer and schedule state come from the "
                    "checkpoint): %s",
                    ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (``model.overrides`` kept whole)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "overrides":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def write_json(run_dir: Path, name: str, content: dict[str, Any]) -> None:
    """Write ``run_dir/name`` atomically as indented JSON."""
    ckpt.atomic_write_text(run_dir / name, json.dumps(content, indent=2) + "\n")
