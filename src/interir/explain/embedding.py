"""Degradation embeddings and their t-SNE map (the paper's Figure 6).

The paper shows t-SNE maps of "degradation embeddings" of InterIR and of the DeepSN-Net baseline,
coloured by degradation combination, and reads tighter clusters as evidence that the explainable
convolution captures the degradation. It does not say which features it embedded. [ours]:

- **feature** (:class:`EmbeddingConfig`): by default the **multiplier** ``Lambda^k`` after stage
  ``k = 1``. ``Lambda`` is the dual variable of the split ``K I = Z``: it accumulates what the
  current estimate still violates, i.e. the part of the input the network attributes to the
  degradation, and after one full ISN iteration (image, degradation and multiplier step) it has
  seen the input through every kind of module. It exists, with the same shape, in InterIR and in
  the ``deepsn`` baseline, so both are embedded from the same place. ``image`` takes the image
  features ``I^k`` instead and ``both`` concatenates the two;
- **pooling**: per channel, the spatial mean and standard deviation over the ``H/s x W/s`` map
  (``2C`` numbers, independent of the image size): the mean captures global shifts (haze's
  airlight), the standard deviation spatial energy (rain streaks, noise);
- **scores**: every feature is standardised over the set, then the silhouette score of the
  combination labels (in the standardised feature space and in the 2-D t-SNE map) and the
  accuracy of a k-nearest-neighbour classifier of the combination, by stratified 5-fold
  cross-validation (with the chance level, the largest class share, beside it).

The network is stopped right after the chosen stage (a forward hook raises), so embedding at
stage 1 costs about one stage of compute per image.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from interir.data.synthetic import (
    combination_rank,
    read_manifest,
    read_suite,
    suite_combinations,
)
from interir.explain._plotting import new_figure, require, save_figure
from interir.registry import list_models
from interir.utils.io import read_image
from interir.utils.tensors import centre_crop

__all__ = [
    "EmbeddingConfig",
    "EmbeddingResult",
    "SuiteItem",
    "load_suite",
    "degradation_embedding",
    "embed_suite",
    "analyse_embedding",
    "write_embedding_report",
    "centre_crop",
    "untrained_warning",
]

Feature = Literal["multiplier", "image", "both"]


@dataclass(frozen=True)
class EmbeddingConfig:
    """How embeddings are made and analysed.

    Attributes:
        feature: ``"multiplier"`` (``Lambda^k``), ``"image"`` (``I^k``) or ``"both"``.
        stage: 1-based stage whose output is embedded (``N`` = after the final image step).
        crop: centre-crop every image to at most ``crop x crop`` first (speed); ``None`` keeps
            the full image.
        seed: random state of t-SNE.
        perplexity: t-SNE perplexity (lowered automatically to ``(n - 1) / 3`` for small sets).
        neighbors: ``k`` of the k-NN accuracy.
        folds: folds of the stratified cross-validation (fewer when a class is smaller).
    """

    feature: Feature = "multiplier"
    stage: int = 1
    crop: int | None = None
    seed: int = 0
    perplexity: float = 30.0
    neighbors: int = 5
    folds: int = 5

    def __post_init__(self) -> None:
        if self.feature not in ("multiplier", "image", "both"):
            raise ValueError(
                f"feature must be 'multiplier', 'image' or 'both', got {self.feature!r}"
            )
        if self.stage < 1:
            raise ValueError(f"stage is 1-based, got {self.stage}")
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop must be a positive size or None, got {self.crop}")
        if self.neighbors < 1 or self.folds < 2 or self.perplexity <= 0:
            raise ValueError("neighbors must be >= 1, folds >= 2 and perplexity > 0")


@dataclass(frozen=True)
class SuiteItem:
    """One degraded image of a synthetic suite: ``ROOT/<combination>/input/<stem>.png``."""

    path: Path
    combination: str
    suite: str


def load_suite(roots: Sequence[str | Path], limit: int | None = None) -> list[SuiteItem]:
    """List the degraded images of one or more synthetic suites, labelled by combination.

    Args:
        roots: suite folders written by ``interir synth`` (``ROOT/<combination>/input/*``), or a
            single combination folder (``ROOT/<combination>`` holding ``input/``).
        limit: at most this many images per (suite, combination), in file-name order.

    Returns:
        Items in (suite, combination, file name) order; combinations in the canonical order
        ``haze, rain, noise, haze+rain, ...``.

    Raises:
        FileNotFoundError / ValueError: a folder is missing or holds no images, with the fix.
    """
    items: list[SuiteItem] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder '{root}' does not exist; check the path")
        single = (root / "input").is_dir()  # one combination folder, ROOT/<combination>
        suite_root = root.resolve().parent if single else root
        combos = [root.resolve().name] if single else suite_combinations(root, read_manifest(root), False)
        if not combos:
            raise ValueError(
                f"'{root}' holds no <combination>/input/ folders; pass a suite written by "
                "`interir synth` (ROOT/<combination>/input/<stem>.png)"
            )
        images = read_suite(suite_root, targets=False, combinations=combos)
        suite = suite_root.resolve().name
        per_combination: dict[str, int] = {}
        for image in images:
            per_combination[image.combination] = per_combination.get(image.combination, 0) + 1
            if limit is None or per_combination[image.combination] <= limit:
                items.append(SuiteItem(image.input, image.combination, suite))
    if not items:
        raise ValueError(f"no images found under {', '.join(map(str, roots))}")
    return items


class _Stop(Exception):
    """Raised by the forward hook once the wanted stage has run."""


def _stage_module(model: nn.Module, stage: int) -> nn.Module:
    stages = getattr(model, "stages", None)
    final = getattr(model, "final_resm", None)
    if not isinstance(stages, nn.ModuleList) or final is None:
        raise TypeError(
            f"{type(model).__name__} is not an unfolding network: degradation embeddings need an "
            "InterIR or deepsn variant (see `interir models`)"
        )
    total = len(stages) + 1
    if stage > total:
        raise ValueError(
            f"stage {stage} does not exist: this model has {total} stages (1..{total})"
        )
    return stages[stage - 1] if stage < total else final


def _pool(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(2).double()
    return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)


@torch.no_grad()
def degradation_embedding(
    model: nn.Module, images: torch.Tensor, feature: Feature = "multiplier", stage: int = 1
) -> torch.Tensor:
    """Pool a degradation embedding from the unfolding variables after ``stage``.

    Args:
        model: an InterIR or ``deepsn`` variant (any model with ``stages`` and ``final_resm``).
        images: ``(B, 3, H, W)`` float in [0, 1] (one size per batch).
        feature: ``"multiplier"`` (``Lambda``), ``"image"`` (``I``) or ``"both"``.
        stage: 1-based stage; the final stage (an image step only) carries ``Lambda`` of the
            stage before it.

    Returns:
        ``(B, 2C)`` float64 (``(B, 4C)`` for ``"both"``): per-channel spatial mean and standard
        deviation of the chosen feature maps.
    """
    module = _stage_module(model, stage)
    captured: dict[str, torch.Tensor] = {}
    is_final = module is getattr(model, "final_resm")

    def hook(_module, inputs, output):
        if is_final:  # RESM(image, multiplier, degraded, operator) -> image
            captured["image"], captured["multiplier"] = output, inputs[1]
        else:  # IPBlock -> (image, multiplier, p_h, p_w)
            captured["image"], captured["multiplier"] = output[0], output[1]
        raise _Stop

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(images.to(next(model.parameters()).device))
    except _Stop:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RuntimeError(f"stage {stage} did not run during the forward pass")
    if feature == "both":
        return torch.cat([_pool(captured["multiplier"]), _pool(captured["image"])], dim=1).cpu()
    return _pool(captured[feature]).cpu()


def embed_suite(
    model: nn.Module,
    items: Sequence[SuiteItem],
    config: EmbeddingConfig = EmbeddingConfig(),
    progress=None,
) -> np.ndarray:
    """Embed every image of a suite, one image at a time (images may differ in size).

    Args:
        model: an InterIR or ``deepsn`` variant.
        items: from :func:`load_suite`.
        config: feature, stage and crop.
        progress: optional ``callable(done, total)``.

    Returns:
        ``(len(items), D)`` float64 array.
    """
    rows = []
    for i, item in enumerate(items):
        image = centre_crop(read_image(item.path).image, config.crop)
        embedding = degradation_embedding(model, image.unsqueeze(0), config.feature, config.stage)
        rows.append(embedding[0].numpy())
        if progress is not None:
            progress(i + 1, len(items))
    return np.stack(rows)


@dataclass
class EmbeddingResult:
    """Embedding of one model over a suite and how well it separates the combinations.

    Attributes:
        name: label of the model (figure title, JSON key).
        spec: how the model was given (checkpoint path, registered name, ``"default"``).
        labels: combination of each image.
        features: ``(n, D)`` pooled embeddings (not standardised).
        coords: ``(n, 2)`` t-SNE coordinates of the standardised features.
        silhouette_features: silhouette score of the labels in the standardised feature space
            (-1..1, higher = better separated), ``None`` if undefined (fewer than 2 labels).
        silhouette_tsne: the same in the 2-D t-SNE map.
        knn_accuracy / knn_std: mean and standard deviation over folds of the k-NN accuracy of
            the combination label, ``None`` if a class has fewer than 2 images.
        chance: accuracy of always guessing the most frequent combination.
        folds / neighbors / perplexity: the values actually used.
        notes: warnings about the result (untrained weights, tiny classes, ...).
    """

    name: str
    spec: str
    labels: list[str]
    features: np.ndarray
    coords: np.ndarray
    silhouette_features: float | None
    silhouette_tsne: float | None
    knn_accuracy: float | None
    knn_std: float | None
    chance: float
    folds: int | None
    neighbors: int | None
    perplexity: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        counts = {c: self.labels.count(c) for c in dict.fromkeys(self.labels)}
        return {
            "model": self.spec,
            "images": len(self.labels),
            "per_combination": counts,
            "dimensions": int(self.features.shape[1]),
            "silhouette_features": self.silhouette_features,
            "silhouette_tsne": self.silhouette_tsne,
            "knn_accuracy": self.knn_accuracy,
            "knn_accuracy_std": self.knn_std,
            "knn_neighbors": self.neighbors,
            "knn_folds": self.folds,
            "chance_accuracy": self.chance,
            "tsne_perplexity": self.perplexity,
            "notes": list(self.notes),
        }


def _standardise(features: np.ndarray) -> np.ndarray:
    mean = features.mean(0, keepdims=True)
    std = features.std(0, keepdims=True)
    return np.where(std > 1e-12, (features - mean) / np.where(std > 1e-12, std, 1.0), 0.0)


def analyse_embedding(
    name: str,
    features: np.ndarray,
    labels: Sequence[str],
    config: EmbeddingConfig = EmbeddingConfig(),
    spec: str = "",
) -> EmbeddingResult:
    """Run t-SNE and score how well the combinations separate (scikit-learn, the ``viz`` extra).

    Args:
        name: label of the model.
        features: ``(n, D)`` embeddings, ``n >= 4``.
        labels: ``n`` combination names.
        config: t-SNE seed/perplexity and the k-NN settings.
        spec: how the model was given, recorded in the result.

    Raises:
        ValueError: fewer than 4 images, or labels of the wrong length.
    """
    purpose = "the t-SNE embedding and its separation scores"
    manifold = require("sklearn.manifold", purpose)
    metrics = require("sklearn.metrics", purpose)
    selection = require("sklearn.model_selection", purpose)
    neighbours = require("sklearn.neighbors", purpose)

    features = np.asarray(features, dtype=np.float64)
    labels = [str(label) for label in labels]
    n = features.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} embeddings")
    if n < 4:
        raise ValueError(
            f"t-SNE needs at least 4 images, got {n}; pass a larger suite or a higher --limit"
        )
    notes: list[str] = []
    z = _standardise(features)
    perplexity = float(min(config.perplexity, max(1.0, (n - 1) / 3)))
    if perplexity < config.perplexity:
        notes.append(f"perplexity lowered to {perplexity:.1f} for {n} images")
    tsne = manifold.TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=config.seed,
        learning_rate="auto",
    )
    coords = tsne.fit_transform(z)

    classes = sorted(set(labels), key=combination_rank)
    counts = [labels.count(c) for c in classes]
    chance = max(counts) / n
    sil_f = sil_t = None
    if 2 <= len(classes) <= n - 1:
        sil_f = float(metrics.silhouette_score(z, labels))
        sil_t = float(metrics.silhouette_score(coords, labels))
    else:
        notes.append("silhouette needs at least 2 combinations and more images than combinations")
    knn = knn_std = None
    folds = neighbors = None
    if len(classes) >= 2 and min(counts) >= 2:
        folds = int(min(config.folds, min(counts)))
        smallest_train = n - math.ceil(n / folds)
        neighbors = int(max(1, min(config.neighbors, smallest_train)))
        splitter = selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
        scores = selection.cross_val_score(
            neighbours.KNeighborsClassifier(n_neighbors=neighbors), z, np.asarray(labels),
            cv=splitter,
        )
        knn, knn_std = float(scores.mean()), float(scores.std())
        if folds < config.folds:
            notes.append(
                f"{folds}-fold cross-validation: the smallest combination has {min(counts)} images"
            )
    else:
        notes.append("k-NN accuracy needs at least 2 combinations with 2 or more images each")
    return EmbeddingResult(
        name=name,
        spec=spec,
        labels=labels,
        features=features,
        coords=np.asarray(coords, dtype=np.float64),
        silhouette_features=sil_f,
        silhouette_tsne=sil_t,
        knn_accuracy=knn,
        knn_std=knn_std,
        chance=chance,
        folds=folds,
        neighbors=neighbors,
        perplexity=perplexity,
        notes=notes,
    )


def _score_line(result: EmbeddingResult) -> str:
    parts = []
    if result.silhouette_features is not None:
        parts.append(
            f"silhouette {result.silhouette_features:.2f} (t-SNE {result.silhouette_tsne:.2f})"
        )
    if result.knn_accuracy is not None:
        parts.append(
            f"{result.neighbors}-NN acc. {result.knn_accuracy:.0%} (chance {result.chance:.0%})"
        )
    return "\n".join(parts)


def write_embedding_report(
    results: Sequence[EmbeddingResult],
    out_dir: str | Path,
    items: Sequence[SuiteItem] | None = None,
    config: EmbeddingConfig = EmbeddingConfig(),
) -> dict[str, Path]:
    """Write the side-by-side t-SNE figure, the scores and the points.

    Files: ``embedding.png`` (one panel per model, points coloured by combination),
    ``embedding.json`` (scores per model and the settings), ``points.csv`` (model, image,
    combination, t-SNE x, y).

    Returns:
        ``{"figure": ..., "scores": ..., "points": ...}``.
    """
    if not results:
        raise ValueError("no embedding results to write")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = require("matplotlib.colors", "drawing the t-SNE figure")
    classes = sorted({c for r in results for c in r.labels}, key=combination_rank)
    palette = [colors.to_hex(c) for c in _palette(len(classes))]
    color_of = dict(zip(classes, palette))

    fig = new_figure(5.2 * len(results) + 1.8, 5.0, "drawing the t-SNE figure")
    for i, result in enumerate(results):
        ax = fig.add_subplot(1, len(results), i + 1)
        for combo in classes:
            idx = [j for j, label in enumerate(result.labels) if label == combo]
            if idx:
                ax.scatter(result.coords[idx, 0], result.coords[idx, 1], s=18,
                           color=color_of[combo], label=combo, alpha=0.85, edgecolors="none")
        ax.set_title(f"{result.name}\n{_score_line(result)}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=8, title="degradation", frameon=False)
    feature = {
        "multiplier": "multiplier $\\Lambda$",
        "image": "image features $I$",
        "both": "$\\Lambda$ and $I$",
    }
    fig.suptitle(
        f"t-SNE of degradation embeddings ({feature[config.feature]} after stage {config.stage}, "
        "channel mean + std)", fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / (5.2 * len(results) + 1.8), 0.95))
    figure = save_figure(fig, out / "embedding.png")

    scores = {
        "settings": {
            **asdict(config), "pooling": "per-channel spatial mean and std", "standardised": True,
        },
        "models": {r.name: r.summary() for r in results},
    }
    scores_path = out / "embedding.json"
    scores_path.write_text(json.dumps(scores, indent=2) + "\n")
    points = out / "points.csv"
    with points.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "image", "combination", "x", "y"])
        for result in results:
            for j, label in enumerate(result.labels):
                image = str(items[j].path) if items is not None and j < len(items) else str(j)
                x, y = result.coords[j]
                writer.writerow([result.name, image, label, f"{x:.5f}", f"{y:.5f}"])
    return {"figure": figure, "scores": scores_path, "points": points}


def _palette(count: int):
    cm = require("matplotlib", "drawing the t-SNE figure")
    cmap = cm.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def untrained_warning(spec: str) -> str | None:
    """A note when ``spec`` is a registered model name (random weights), else ``None``."""
    if spec in list_models():
        return (
            f"'{spec}' has untrained (random) weights: its clusters reflect raw input statistics "
            "passed through random layers, not learned degradation knowledge"
        )
    return None
