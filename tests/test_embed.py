"""Degradation embeddings, separation scores and `interir embed` (the paper's Figure 6)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interir import create_model
from interir.explain import (
    EmbeddingConfig,
    analyse_embedding,
    degradation_embedding,
    embed_suite,
    load_suite,
    write_embedding_report,
)
from interir.utils.io import write_image

COMBOS = ("haze", "noise", "haze+noise")


def _tiny(name: str = "interir-tiny"):
    return create_model(name, width=8, head_expansion=1).eval()


def _pooled(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(2).double()
    return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False)], dim=1)


def _write_suite(root: Path, per_combo: int = 4, size: int = 24) -> Path:
    """A fake ``interir synth`` suite: smooth scenes, 'haze' = veil, 'noise' = Gaussian noise."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    for i in range(per_combo):
        clean = torch.stack([xx * (i + 1) / per_combo, yy, 1 - xx]).clamp(0, 1)
        for combo in COMBOS:
            degraded = clean
            if "haze" in combo:
                degraded = 0.5 * degraded + 0.45
            if "noise" in combo:
                degraded = degraded + 0.2 * torch.randn(clean.shape, generator=g)
            for sub, image in (("input", degraded.clamp(0, 1)), ("target", clean)):
                (root / combo / sub).mkdir(parents=True, exist_ok=True)
                write_image(root / combo / sub / f"img{i:02d}.png", image)
    (root / "manifest.json").write_text("{}")
    return root


def test_embedding_equals_pooled_trace_variables():
    model = _tiny()
    x = torch.rand(2, 3, 29, 35, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        trace = model.trace(x)
    c = model.config.width
    for stage in (1, 2):
        emb = degradation_embedding(model, x, "multiplier", stage)
        assert emb.shape == (2, 2 * c) and emb.dtype == torch.float64
        assert torch.allclose(emb, _pooled(trace.multipliers[stage - 1]), atol=1e-6)
    # the final stage (image step only) carries the multiplier of the stage before it
    last = degradation_embedding(model, x, "multiplier", model.config.stages)
    assert torch.allclose(last, _pooled(trace.multipliers[-1]), atol=1e-6)
    both = degradation_embedding(model, x, "both", 1)
    assert both.shape == (2, 4 * c)
    assert torch.allclose(both[:, : 2 * c], _pooled(trace.multipliers[0]), atol=1e-6)
    with pytest.raises(ValueError, match="has 3 stages"):
        degradation_embedding(model, x, "multiplier", 4)


def test_embedding_stops_after_the_stage():
    model = _tiny()
    calls = []
    handle = model.up.register_forward_hook(lambda *args: calls.append(1))
    try:
        degradation_embedding(model, torch.rand(1, 3, 16, 16), "image", 1)
    finally:
        handle.remove()
    assert calls == []  # the upsampling head, after the last stage, never ran


def test_embedding_needs_an_unfolding_model():
    with pytest.raises(TypeError, match="not an unfolding network"):
        degradation_embedding(create_model("nafnet-small"), torch.rand(1, 3, 16, 16))


def test_load_suite_orders_and_labels(tmp_path):
    root = _write_suite(tmp_path / "suite", per_combo=3)
    items = load_suite([root])
    assert [it.combination for it in items] == ["haze"] * 3 + ["noise"] * 3 + ["haze+noise"] * 3
    assert items[0].path.name == "img00.png" and items[0].suite == "suite"
    limited = load_suite([root, root / "noise"], limit=1)
    assert [it.combination for it in limited] == ["haze", "noise", "haze+noise", "noise"]
    with pytest.raises(ValueError, match="interir synth"):
        load_suite([tmp_path])
    with pytest.raises(FileNotFoundError):
        load_suite([tmp_path / "missing"])


@pytest.mark.viz
def test_scores_separate_clusters_and_not_random_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 10
    labels = [c for c in COMBOS for _ in range(10)]
    features = np.concatenate([centres[i] + rng.normal(size=(10, 16)) for i in range(3)])
    good = analyse_embedding("good", features, labels)
    assert good.knn_accuracy == 1.0 and good.knn_std == 0.0
    assert good.silhouette_features > 0.6 and good.silhouette_tsne > 0.6
    assert good.coords.shape == (30, 2) and good.chance == pytest.approx(1 / 3)
    assert good.folds == 5 and good.neighbors == 5
    noise = analyse_embedding("noise", rng.normal(size=(30, 16)), labels)
    assert noise.knn_accuracy < 0.6 and abs(noise.silhouette_features) < 0.1


@pytest.mark.viz
def test_scores_on_tiny_sets():
    labels = ["haze", "haze", "noise", "noise", "rain"]
    result = analyse_embedding("x", np.arange(15, dtype=float).reshape(5, 3), labels)
    assert result.knn_accuracy is None and any("k-NN" in n for n in result.notes)
    assert result.perplexity == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="at least 4"):
        analyse_embedding("x", np.zeros((3, 2)), ["a", "b", "c"])


@pytest.mark.viz
def test_suite_embedding_and_report(tmp_path):
    root = _write_suite(tmp_path / "suite", per_combo=4)
    items = load_suite([root])
    config = EmbeddingConfig(crop=16, folds=4)
    features = embed_suite(_tiny(), items, config)
    assert features.shape == (12, 16) and np.isfinite(features).all()
    labels = [it.combination for it in items]
    results = [analyse_embedding("A", features, labels, config, spec="a"),
               analyse_embedding("B", features[:, ::-1].copy(), labels, config, spec="b")]
    paths = write_embedding_report(results, tmp_path / "out", items, config)
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads(paths["scores"].read_text())
    assert set(scores["models"]) == {"A", "B"}
    assert scores["models"]["A"]["per_combination"] == {"haze": 4, "noise": 4, "haze+noise": 4}
    assert scores["models"]["A"]["knn_folds"] == 4 and scores["settings"]["crop"] == 16
    assert scores["models"]["A"]["knn_accuracy"] == pytest.approx(results[0].knn_accuracy)
    rows = list(csv.DictReader(paths["points"].open()))
    assert len(rows) == 24 and rows[0]["combination"] == "haze"
    assert rows[0]["image"].endswith("img00.png")


@pytest.mark.viz
@pytest.mark.filterwarnings("ignore:.* is a model name")
def test_embed_command(tmp_path):
    from interir.cli.app import app
    import interir.cli.explain  # noqa: F401  (registers the commands)

    root = _write_suite(tmp_path / "suite", per_combo=3, size=16)
    result = CliRunner().invoke(app, [
        "embed", str(root), "-o", str(tmp_path / "out"), "--model", "interir-tiny",
        "--baseline-model", "deepsn-small", "--stage", "2", "--perplexity", "3",
    ])
    assert result.exit_code == 0, result.output
    assert "untrained" in result.output
    assert "embedding with interir-tiny" in result.output  # the shared progress display
    assert result.output.count("[9/9 images]") == 2  # its last line, once per model
    scores = json.loads((tmp_path / "out" / "embedding.json").read_text())
    names = list(scores["models"])
    assert names == ["InterIR (interir-tiny)", "DeepSN-Net baseline (deepsn-small)"]
    for entry in scores["models"].values():
        assert entry["images"] == 9 and entry["knn_folds"] == 3
        assert math.isfinite(entry["silhouette_features"]) and 0.0 <= entry["knn_accuracy"] <= 1.0
        assert any("untrained" in note for note in entry["notes"])
    assert scores["settings"]["stage"] == 2 and scores["settings"]["feature"] == "multiplier"
    assert (tmp_path / "out" / "embedding.png").is_file()
    only = CliRunner().invoke(app, [
        "embed", str(root), "-o", str(tmp_path / "one"), "--model", "interir-tiny", "--no-baseline",
        "--feature", "image",
    ])
    assert only.exit_code == 0, only.output
    assert list(json.loads((tmp_path / "one" / "embedding.json").read_text())["models"]) == [
        "InterIR (interir-tiny)"]
    bad = CliRunner().invoke(app, ["embed", str(root), "-o", str(tmp_path / "bad"),
                                   "--model", "interir-tiny", "--feature", "pixels"])
    assert bad.exit_code == 2 and "feature must be" in bad.output
