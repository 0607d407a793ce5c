"""Shipped models: a name maps to a weights file inside the package, verified by sha256.

``src/interir/weights/`` holds, per shipped model ``<name>``:

- ``<name>.safetensors`` — weights; the model name and config are in the safetensors header, so
  :func:`interir.load_model` can rebuild the network from the file alone;
- ``<name>.json`` — the human-readable description written beside it;
- ``registry.json`` — ``{name: {"file", "sha256", "card", "source_run", ...}}``, the checksums
  that :func:`pretrained_path` checks before handing out a file;
- ``MODEL_CARD.md`` — how the model was trained and how it scores.

This module only maps names to verified paths (and records a new one, :func:`record_shipped`);
loading is :func:`interir.load_model` / :func:`interir.load_pretrained`, and
:func:`interir.loading.ship_pretrained` turns a training run into those files (used once per
release, see ``scripts/ship_default.py``).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from interir.utils.files import atomic_write_text, sha256_of

WEIGHTS_DIR = Path(__file__).parent / "weights"
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"


class PretrainedError(ValueError):
    """The shipped weights are missing or do not match their recorded checksum."""


def _registry() -> dict[str, Any]:
    if not REGISTRY_FILE.is_file():
        return {}
    try:
        entries = json.loads(REGISTRY_FILE.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        entries = e
    if not isinstance(entries, dict):
        problem = entries if isinstance(entries, Exception) else "not a JSON object"
        raise PretrainedError(
            f"the registry of shipped weights '{REGISTRY_FILE}' is corrupt ({problem}). Fix: "
            "reinstall interir (pip install --force-reinstall interir), or restore the file "
            "with git checkout"
        )
    return entries


def list_pretrained() -> list[str]:
    """Names of the models shipped inside the package (``"default"`` once trained)."""
    return sorted(_registry())


def pretrained_path(name: str = "default") -> Path:
    """Path of a shipped model's weights after checking they exist and match their sha256."""
    entries = _registry()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        close = difflib.get_close_matches(name, sorted(entries), n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise PretrainedError(
            f"no shipped pretrained model named {name!r} (shipped: {known}). {hint}"
            "Train one with `interir train configs/cpu-small.yaml` and pass the run folder instead."
        )
    entry = entries[name]
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"the weights file of {name!r} is missing: {path}; reinstall interir")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise PretrainedError(
            f"{path} is corrupt or was modified: sha256 {actual} does not match the recorded "
            f"{entry['sha256']}; reinstall interir (or re-run scripts/ship_default.py)"
        )
    return path


def pretrained_architecture(name: str) -> str | None:
    """Registered architecture of the shipped model ``name`` (from its ``.json``), or ``None``."""
    entry = _registry().get(name)
    if entry is None:
        return None
    description = WEIGHTS_DIR / Path(entry["file"]).with_suffix(".json").name
    if not description.is_file():
        return None
    return json.loads(description.read_text()).get("model_name")


def record_shipped(name: str, path: Path, **info: Any) -> Path:
    """Record the weights file ``path`` (inside :data:`WEIGHTS_DIR`) as the shipped model
    ``name``, with its sha256.

    Args:
        name: the shipped name.
        path: the weights file, already written.
        **info: extra fields for the registry entry (e.g. ``source_run``, ``steps``, ``card``).

    Returns:
        ``path``.
    """
    entries = _registry()
    entries[name] = {"file": path.name, "sha256": sha256_of(path), "card": "MODEL_CARD.md", **info}
    atomic_write_text(REGISTRY_FILE, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return path
