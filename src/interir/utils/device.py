"""Device choice, out-of-memory detection and memory measurement helpers.

These are small, dependency-free utilities shared by inference, profiling and the CLI:

- :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:1" | "mps"`` into a
  :class:`torch.device`, failing with a fix when the device is not available;
- :func:`is_out_of_memory` recognises CUDA (and CPU allocator) out-of-memory errors, so callers can
  shrink their work and retry;
- :func:`current_rss_bytes` / :func:`peak_rss_bytes` read the process's resident memory (Linux
  ``/proc``, else ``getrusage``), the only reliable CPU peak measure when run in a fresh process;
- :func:`available_memory_bytes` is what the process can still take, ``ulimit -v`` and cgroup
  limits included (it sets the default image size limit of :func:`interir.utils.io.read_image`).
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = [
    "resolve_device",
    "module_device",
    "is_out_of_memory",
    "empty_cache",
    "synchronize",
    "current_rss_bytes",
    "peak_rss_bytes",
    "available_memory_bytes",
    "address_space_headroom",
]

#: The error type torch raises when the CUDA caching allocator runs out of memory.
OutOfMemoryError: type[BaseException] = getattr(
    torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError
)


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Pick the device to run on.

    Args:
        spec: ``"auto"`` (or ``None``) for CUDA when available, else Apple ``mps`` when available,
            else the CPU; or an explicit ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or
            :class:`torch.device`.

    Returns:
        The device.

    Raises:
        ValueError: the device string is malformed, or names a device this machine lacks (the
            message says which devices are available).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {spec!r} was asked for but CUDA is not available (torch "
                f"{torch.__version__} "
                f"{'is a CPU-only build' if torch.version.cuda is None else 'sees no GPU'}); "
                "use --device cpu or --device auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device {spec!r} was asked for but MPS is not available; use --device cpu"
            )
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA out-of-memory errors and the CPU allocator's "can't allocate memory" error."""
    if isinstance(exc, OutOfMemoryError) or isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return "out of memory" in text.lower() or "can't allocate memory" in text
    return False


def empty_cache(device: torch.device) -> None:
    """Release cached allocator blocks on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (needed before reading a wall-clock time on a GPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.synchronize()


def current_rss_bytes() -> int:
    """Resident set size of this process now, in bytes (Linux ``/proc/self/statm``).

    Falls back to :func:`peak_rss_bytes` where ``/proc`` is not available.
    """
    try:
        with open("/proc/self/statm") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Largest resident set size this process has had so far, in bytes.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: the high-water mark of the current
    address space, which starts afresh when a process is exec'd. ``getrusage``'s ``ru_maxrss``
    is the fallback elsewhere, but on Linux it is *preserved across exec*, so a child process
    started from a large parent would report the parent's peak. Either way it is a high-water
    mark of the whole process, so a meaningful peak for one workload needs a fresh process
    (:mod:`interir.profiling` runs one per measurement).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource  # POSIX only: imported here so that the module imports on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _cgroup_headroom() -> int | None:
    """Bytes left under this container's cgroup v2 memory limit, or None without a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = open("/sys/fs/cgroup/memory.current").read().strip()
    except OSError:
        return None
    if limit == "max":
        return None
    try:
        return max(0, int(limit) - int(used))
    except ValueError:
        return None


def address_space_headroom() -> int | None:
    """Bytes of address space left under ``ulimit -v`` (``RLIMIT_AS``), or None without a limit.

    The limit counts virtual memory (``VmSize``, which torch's libraries already make large), not
    resident memory, so an allocation fails at the limit whatever the free memory says.
    """
    try:
        import resource  # POSIX only: imported here so that the module imports on Windows
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, int(soft) - used)


def available_memory_bytes() -> int | None:
    """Memory this process can still take, in bytes, or None when the system does not say.

    Linux ``MemAvailable`` (free plus reclaimable cache), capped by a container's cgroup limit,
    which ``/proc/meminfo`` does not reflect, and by the address space left under ``ulimit -v``
    (``RLIMIT_AS``); ``sysconf`` free pages elsewhere.
    """
    found: list[int] = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for headroom in (_cgroup_headroom(), address_space_headroom()):
        if headroom is not None:
            found.append(headroom)
    return min(found) if found else None
