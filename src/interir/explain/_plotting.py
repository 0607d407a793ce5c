"""Lazy access to the optional plotting and analysis libraries of the ``viz`` extra.

Nothing here imports matplotlib or scikit-learn at module import time: ``import interir.explain``
stays light, and the libraries are loaded only when a report or an embedding is actually made.
Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure` rendered by the
Agg canvas), never through ``pyplot``, so the global backend of an interactive session is left
alone and no display is needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

VIZ_HINT = 'pip install "interir[viz]"'


class MissingExtraError(ImportError):
    """An optional library of the ``viz`` extra is not installed."""


def require(module: str, purpose: str) -> Any:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    Args:
        module: dotted module name, e.g. ``"matplotlib"`` or ``"sklearn.manifold"``.
        purpose: what the caller wanted to do, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise MissingExtraError(
            f"{purpose} needs {package}, which is not installed. Fix: {VIZ_HINT} "
            f"(or `make venv`, whose default extras include viz)."
        ) from exc


def new_figure(width: float, height: float, purpose: str = "drawing the explanation figures"):
    """A matplotlib :class:`~matplotlib.figure.Figure` drawn by the Agg canvas (no pyplot)."""
    figure_module = require("matplotlib.figure", purpose)
    agg = require("matplotlib.backends.backend_agg", purpose)
    fig = figure_module.Figure(figsize=(width, height), dpi=100)
    agg.FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", facecolor="white")
    return path


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float tensor -> ``(H, W, 3)`` float array clamped to [0, 1] for display."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def hide_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
