"""Atomic file writes (a crash never leaves a half-written file under the final name), the
cleaning of their leftovers after a kill, and checks that an output location can be written (and
that a path named by a file stays inside its folder) before any work starts, and the sha256 of a
file (shipped weights, suite manifests)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator


class OutputPathError(ValueError):
    """An output path cannot be written (a file in the way, no permission, read-only disk)."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (where a new folder would be created)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe_write(folder: Path, label: str, path: Path) -> None:
    """Create and delete a file in ``folder``: the only test that holds for root, ACLs and
    read-only mounts alike (``os.access`` answers yes to root on a read-only filesystem)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".interir-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputPathError(
            f"cannot write to {label} '{path}' ({reason} in '{folder}'). Fix: choose a folder "
            "you can write to, or change the folder's permissions"
        ) from None


def check_writable_dir(path: str | os.PathLike, label: str = "output folder") -> Path:
    """Check that ``path`` is a folder, or can become one, that this process can write into.

    Nothing is created: a missing folder is checked through its closest existing ancestor, so a
    command that fails later leaves no empty folder behind.

    Raises:
        OutputPathError: a file is in the way, or the folder cannot be written; the message names
            the path and the fix.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        where = "" if existing == path.absolute() else f" ('{existing}' is a file)"
        raise OutputPathError(
            f"{label} '{path}' cannot be a folder{where}. Fix: name a folder (it is created when "
            "missing), or move the file out of the way"
        )
    _probe_write(existing, label, path)
    return path


def check_writable_file(path: str | os.PathLike, label: str = "output file") -> Path:
    """Check that the file ``path`` can be written (its folder writable, no folder in the way).

    Raises:
        OutputPathError: as :func:`check_writable_dir`.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(
            f"{label} '{path}' is a folder. Fix: name a file, e.g. one inside that folder"
        )
    check_writable_dir(path.parent, f"folder of the {label}")
    return path


def file_in_folder(folder: str | os.PathLike, name: object, what: str) -> Path:
    """``folder / name``, checked to stay inside ``folder``: a plain relative path, no ``..``.

    For names read from files (a manifest's combinations, ``model.json``'s weights): a file
    must never make interir read or write outside the folder that holds it.

    Raises:
        ValueError: ``name`` is not a string, is empty, absolute or climbs out with ``..``; the
            message names ``what`` and the fix.
    """
    text = name if isinstance(name, str) else None
    parts = Path(text).parts if text else ()
    if not parts or Path(text).is_absolute() or ".." in parts or "\\" in text:
        raise ValueError(
            f"{what} is {name!r}, not a name inside '{folder}' (absolute paths and '..' are "
            "refused, so that a file never points outside its folder). Fix: name a file or folder "
            "inside it"
        )
    return Path(folder) / text


#: Temporary files of :func:`atomic_open`: ``.<name>.<8 random characters of mkstemp>.tmp``.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def remove_stale_temps(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_open` writes of ``paths`` left
    (a ``kill -9`` skips the clean-up), and return them.

    Only files of exactly that pattern for those names are touched, so a user's own files are
    safe; each folder is listed once. Call it only for paths this process is about to write
    (another process writing the same path at that moment would lose its temporary file).
    """
    names: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        names.setdefault(path.parent, set()).add(path.name)
    removed = []
    for folder, wanted in names.items():
        try:
            entries = list(folder.iterdir())
        except OSError:  # a folder not created yet holds no leftovers
            continue
        for entry in entries:
            match = _TEMP_NAME.fullmatch(entry.name)
            if match and match["name"] in wanted and entry.is_file() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def default_mode(directory: bool = False) -> int:
    """The mode a plain ``open``/``mkdir`` gives a new file/folder (the umask applied)."""
    return (0o777 if directory else 0o666) & ~_umask()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entry table so a rename inside it survives a power cut (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was. The file gets
    the permissions a plain ``open`` would give it (``mkstemp`` alone would make it owner-only).

    Args:
        path: final location; parent folders are created.
        fsync: flush the data and the folder entry to disk before returning (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, fsync=fsync) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (so a large weights file is never held whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
