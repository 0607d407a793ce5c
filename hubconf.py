"""torch.hub entry points: ``torch.hub.load(repo_or_dir, "interir_default", source="local")``.

- ``interir_default()``: the pretrained model shipped in ``src/interir/weights`` (checked against
  its sha256), in eval mode; it maps ``(B, 3, H, W)`` in [0, 1] to restored images of that shape;
- ``interir_rain()``: the shipped ``default-rain`` model (stage 6; kept for code that loads it:
  the default handles dense rain streaks too since stage 8);
- ``interir_pretrained(name)``: any shipped model by name (``interir.list_pretrained()``: ``default``,
  ``default-v1``, ``default-rain``, ``default-real`` and the equal-budget ``eb-*`` models);
- ``interir_model(name, **overrides)``: a registered architecture (``interir.list_models()``) with
  random weights, for training or tests.

The repository uses a ``src/`` layout, so when ``interir`` is not installed the entry points
import it from ``src/`` next to this file. Its dependencies must be installed either way
(``pip install -e .`` installs everything).
"""

import importlib.util
import sys
from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "yaml", "omegaconf", "pydantic", "safetensors"]

_SRC = Path(__file__).resolve().parent / "src"
if importlib.util.find_spec("interir") is None and _SRC.is_dir():
    sys.path.insert(0, str(_SRC))  # a plain checkout or torch.hub's download: not installed

from interir import create_model, load_pretrained  # noqa: E402 - needs the path above


def interir_default(map_location: str = "cpu"):
    """The shipped pretrained InterIR model (haze, rain and noise), in eval mode.

    Args:
        map_location: device for the weights, e.g. ``"cpu"`` or ``"cuda"``.
    """
    return load_pretrained("default", map_location=map_location)


def interir_rain(map_location: str = "cpu"):
    """The shipped ``default-rain`` model (dense rain streaks, Rain100H-like), in eval mode."""
    return load_pretrained("default-rain", map_location=map_location)


def interir_pretrained(name: str = "default", map_location: str = "cpu"):
    """A shipped pretrained model by name, in eval mode (sha256-checked).

    Args:
        name: one of ``interir.list_pretrained()``, e.g. ``"default-rain"`` or ``"eb-nafnet-small"``.
        map_location: device for the weights.
    """
    return load_pretrained(name, map_location=map_location)


def interir_model(name: str = "interir", **overrides):
    """A registered architecture with random weights, e.g. ``interir_model("interir-small")``.

    Args:
        name: a name from ``interir.list_models()``.
        **overrides: config fields to change, e.g. ``width=24``.
    """
    return create_model(name, **overrides)
