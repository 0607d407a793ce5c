"""``interir explain`` and ``interir embed``: parse, load, call :mod:`interir.explain`, report.

- ``interir explain IMAGE [--target CLEAN] -o DIR``: what each unfolding stage and chosen
  explainable convolutions did on one image, as ``DIR/index.html`` with PNG figures;
- ``interir embed DATASET... -o DIR``: the paper's Figure 6, a t-SNE map of degradation
  embeddings of InterIR beside the deepsn baseline, with separation scores.

matplotlib and scikit-learn (the ``viz`` extra) are imported only when a command runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app
from interir.utils.progress import ProgressDisplay
from interir.cli.options import THREADS_HELP

_MODEL_HELP = (
    "Checkpoint folder/run/.safetensors, 'default' (bundled weights) or a registered name "
    "(random weights); classical methods have nothing to explain."
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _load_network(spec: str, device: str):
    """The network ``spec`` names (:func:`interir.loading.resolve_model`'s grammar); a classical
    method is refused, since it has no stages, convolutions or embeddings to explain."""
    from interir.classical import ClassicalMethod
    from interir.loading import resolve_model

    try:
        _, net = resolve_model(spec, device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    if isinstance(net, ClassicalMethod):
        _fail(
            f"{spec!r} is a classical method (no learning): it has no unfolding stages, "
            "explainable convolutions or embeddings to explain. Fix: explain a network (-m "
            f"default, a checkpoint), or score it beside one with `interir eval -m {spec} -m "
            "default DATASET`"
        )
    return net


def _read_pair(image: Path, target: Optional[Path], crop: Optional[int]):
    """The degraded image and its clean target, checked to be the same size *before* cropping:
    centre crops of two differently sized images have the same size but show different parts of
    the scene, so the per-stage PSNR would be silently wrong."""
    from interir.utils.io import read_image
    from interir.utils.tensors import centre_crop

    degraded = read_image(image).image
    clean = read_image(target).image if target is not None else None
    if clean is not None and clean.shape != degraded.shape:
        size = lambda t: f"{t.shape[-1]}x{t.shape[-2]}"  # noqa: E731 - width x height
        raise ValueError(
            f"--target '{target}' is {size(clean)} but the image '{image}' is {size(degraded)} "
            "(width x height); PSNR needs the clean image of the same scene and size. Fix: pass "
            "the matching target, or omit --target"
        )
    return centre_crop(degraded, crop), (centre_crop(clean, crop) if clean is not None else None)


def _check_out(out: Path) -> None:
    from interir.utils.files import OutputPathError, check_writable_dir

    try:
        check_writable_dir(out, "--out folder")
    except OutputPathError as exc:
        _fail(str(exc))


_MAX_PIXELS_HELP = ("Refuse images with more pixels than this, read from the file header "
                    "(default: what the available memory holds).")


def _scores(result) -> str:
    def num(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"silhouette {num(result.silhouette_features)} "
        f"(t-SNE map {num(result.silhouette_tsne)}), "
        f"{result.neighbors}-NN accuracy {num(result.knn_accuracy)} (chance {result.chance:.3f})"
    )


@app.command("explain")
def explain_command(
    image: Annotated[Path, typer.Argument(
        help="Degraded image to explain (PNG, JPEG, TIFF, ...).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o",
        help="Output folder for index.html and the figures (required unless --list-convs).",
    )] = None,
    target: Annotated[Optional[Path], typer.Option(
        "--target", "-t",
        help="Clean image of the same scene and size: adds PSNR per stage.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=_MODEL_HELP)] = "default",
    conv: Annotated[Optional[list[str]], typer.Option(
        "--conv", "-c",
        help="Explainable conv to explain, repeatable; 'all' for every one (default: the first "
             "conv of the first, middle and last stage).")] = None,
    list_convs: Annotated[bool, typer.Option(
        "--list-convs", help="Print the explainable convolutions of the model and exit.")] = False,
    channels: Annotated[int, typer.Option(
        "--channels", min=0, max=16,
        help="Mask channels shown per conv (most modulated first).")] = 4,
    crop: Annotated[Optional[int], typer.Option(
        "--crop", min=8,
        help="Centre-crop image (and target) to at most N x N first, for speed.")] = None,
    factors: Annotated[str, typer.Option(
        "--factors",
        help="How P_h/P_w are averaged over channels: abs (mean |P|) | signed.")] = "abs",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    max_pixels: Annotated[Optional[int], typer.Option(
        "--max-pixels", min=1, help=_MAX_PIXELS_HELP, show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Show what each unfolding stage and chosen explainable convolutions do on IMAGE."""
    from interir.explain import MissingExtraError, explain_image, write_report
    from interir.explain.physics import physics_report
    from interir.models.unfolding import InterIR
    from interir.models.explainable_conv import explainable_convs
    from interir.utils.io import pixel_limit
    from interir.utils.threads import apply_threads

    apply_threads(threads)
    net = _load_network(model, device)
    if list_convs:
        names = list(explainable_convs(net))
        if not names:
            typer.echo("this model has no explainable convolutions (standard convs only)")
        for name in names:
            typer.echo(name)
        return
    if out is None:
        _fail("missing option --out/-o: the folder to write index.html and the figures into")
    _check_out(out)
    try:
        with pixel_limit(max_pixels):
            degraded, clean = _read_pair(image, target, crop)
        explanation = explain_image(
            net, degraded, target=clean, conv_names=conv, channels=channels,
            factor_reduction=factors,
        )
        index = write_report(explanation, out)
        physics = physics_report(net, degraded) if isinstance(net, InterIR) else None
    except (MissingExtraError, ValueError, TypeError) as exc:
        _fail(str(exc))
    if physics is not None:
        lines = physics.lines()
        (out / "physics.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            typer.echo(line)
    if explanation.stage_psnr is not None:
        per_stage = " -> ".join(f"{v:.2f}" for v in explanation.stage_psnr)
        typer.echo(f"PSNR input {explanation.input_psnr:.2f} dB -> {per_stage} dB (per stage)")
        shares = explanation.gain_shares()
        if explanation.refined_psnr is not None and shares is not None:
            typer.echo(
                f"refinement [ours] -> {explanation.refined_psnr:.2f} dB: the stages gave "
                f"{shares['unfolding_db']:+.2f} dB, the refinement {shares['refinement_db']:+.2f} dB"
            )
    if explanation.feature_norms:
        norms = " -> ".join(f"{v:.1f}" for v in explanation.feature_norms)
        typer.echo(f"|I| per stage (features): {norms}")
    typer.echo(f"wrote {index}")


@app.command("embed")
def embed_command(
    datasets: Annotated[list[Path], typer.Argument(
        help="Synthetic suites written by `interir synth` (ROOT/<combination>/input/*.png).",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder for embedding.png, embedding.json, points.csv.")],
    model: Annotated[str, typer.Option("--model", "-m", help=_MODEL_HELP)] = "default",
    baseline_model: Annotated[str, typer.Option(
        "--baseline-model", "-b",
        help="DeepSN-Net-style baseline: a deepsn checkpoint (recommended) or a registered name "
             "such as deepsn / deepsn-small (random weights).")] = "deepsn",
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Embed only --model.")] = False,
    feature: Annotated[str, typer.Option(
        "--feature", help="multiplier (Lambda) | image (I) | both.")] = "multiplier",
    stage: Annotated[int, typer.Option(
        "--stage", min=1, help="Stage whose output is embedded.")] = 1,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help="At most N images per combination.")] = None,
    crop: Annotated[Optional[int], typer.Option(
        "--crop", min=8, help="Centre-crop images to at most N x N first, for speed.")] = None,
    perplexity: Annotated[float, typer.Option(
        "--perplexity", min=1.0, help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", help="t-SNE random state.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    max_pixels: Annotated[Optional[int], typer.Option(
        "--max-pixels", min=1, help=_MAX_PIXELS_HELP, show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """The paper's Figure 6: t-SNE of degradation embeddings, InterIR beside the deepsn baseline."""
    from interir.explain import (
        EmbeddingConfig,
        MissingExtraError,
        analyse_embedding,
        embed_suite,
        load_suite,
        write_embedding_report,
    )
    from interir.explain._plotting import require
    from interir.explain.embedding import untrained_warning
    from interir.utils.io import pixel_limit
    from interir.utils.threads import apply_threads

    _check_out(out)
    apply_threads(threads)

    try:
        config = EmbeddingConfig(
            feature=feature, stage=stage, crop=crop, seed=seed, perplexity=perplexity
        )
        require("sklearn.manifold", "interir embed")  # fail before the slow part
        require("matplotlib.figure", "interir embed")
        items = load_suite(datasets, limit=limit)
    except (MissingExtraError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    labels = [item.combination for item in items]
    typer.echo(f"{len(items)} images, {len(set(labels))} combinations")

    specs = [("InterIR", model)]
    if not no_baseline:
        specs.append(("DeepSN-Net baseline", baseline_model))
    results = []
    for title, spec in specs:
        note = untrained_warning(spec)
        if note:
            typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the untrained-weights warning was printed above
            net = _load_network(spec, device)  # fails with its own message (typer.Exit)
        try:
            display = ProgressDisplay(len(items), "images")
            with pixel_limit(max_pixels), display:
                display.print(f"embedding with {spec}", err=True)
                features = embed_suite(net, items, config, progress=display.update)
            result = analyse_embedding(f"{title} ({spec})", features, labels, config, spec=spec)
        except (FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
            _fail(str(exc))
        if note:
            result.notes.append(note)
        results.append(result)
        typer.echo(f"{result.name}: {_scores(result)}")
    paths = write_embedding_report(results, out, items, config)
    typer.echo(f"wrote {paths['figure']}, {paths['scores']}, {paths['points']}")
