"""Draw an :class:`~interir.explain.trajectory.Explanation` as PNG figures and one HTML page.

:func:`write_report` writes into ``out_dir``::

    index.html          the page: every figure with a caption in terms of the optimisation
    trajectory.png      thumbnails of the image estimate after each stage
    psnr.png            PSNR against stage (only with a clean target)
    factors.png         P_h and P_w of each stage as heat maps
    updates.png         size of the multiplier and of each step's update, per stage
    conv_<i>.png        one sheet per explained convolution (masks, attention, kernel change)
    stages/*.png        full-resolution input, initial estimate, stage estimates (and target)
    explanation.json    the numbers behind the figures

Figures are drawn with matplotlib (the ``viz`` extra), imported only here and only when called.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import torch

from interir.explain._plotting import hide_axes, new_figure, save_figure, to_hwc
from interir.explain.convs import ConvExplanation
from interir.explain.trajectory import Explanation
from interir.utils.io import write_image

__all__ = ["write_report", "CAPTIONS"]

_PURPOSE = "writing the explanation report"

#: Captions of the report's panels (also used by docs/explain.md).
CAPTIONS = {
    "trajectory": (
        "The unfolding trajectory. InterIR unrolls N iterations of the improved semi-smooth Newton "
        "(ISN) method. Each thumbnail is the image estimate Up(I<sup>k</sup>) + D after stage k: "
        "stages 1 to N&minus;1 are IPBlocks, each an image step (RESM: a learned Newton step on "
        "&frac12;&#8214;F&#8214;&sup2;), a degradation step (DMUM: refit P<sub>h</sub>, "
        "P<sub>w</sub>) and a multiplier step (MUM: update &Lambda;); stage N is one more image "
        "step and its estimate is the unfolding's output. <i>init</i> is the estimate from the "
        "initialisation alone. A network with a full-resolution refinement ([ours], not the "
        "paper's) shows it as its own panel after the last stage: its gain is not the optimiser's. "
        "Images are clamped to [0, 1] for display."
    ),
    "psnr": (
        "PSNR of each stage's estimate against the clean target (RGB, 8-bit quantised). A rising "
        "curve means each unrolled iteration moves the estimate towards the solution of the "
        "optimisation problem; the dashed line is the degraded input, stage 0 the initialisation."
    ),
    "factors": (
        "The degradation step. DMUM refits the Kronecker factors of the degradation operator "
        "&#119979;(X) = P<sub>h</sub> X P<sub>w</sub>, applied to each feature channel at 1/s of "
        "the image resolution: P<sub>h</sub> (H'&times;H') mixes rows, P<sub>w</sub> "
        "(W'&times;W') mixes columns. Shown is, after each stage, the mean over the C feature "
        "channels of |P| (the sign of a channel's factor follows the arbitrary sign of the learned "
        "features that built it, so signed means cancel; <code>--factors signed</code> shows the "
        "signed mean in red/blue), one colour scale per factor, clipped at the 99.5th percentile. "
        "Mass on the diagonal "
        "means a local, near-identity operator; mass off the diagonal means the operator mixes "
        "distant rows or columns (a global effect such as a veil). The final stage reuses the "
        "last factors."
    ),
    "updates": (
        "Size of each step's update. Left, the multiplier step: MUM updates &Lambda; &larr; "
        "&Lambda; + &rho;&#8857;&sigma;(K I &minus; Z), the dual variable of the split "
        "K I = Z; the RMS of &Lambda; and of each update are plotted (stage 0: the "
        "initialisation). An update that shrinks over the stages means the constraint is being "
        "met. Right: RMS change of the image estimate made by each image step, and relative "
        "change &#8214;P<sup>k</sup> &minus; P<sup>k&minus;1</sup>&#8214; / "
        "&#8214;P<sup>k&minus;1</sup>&#8214; of the factors made by each degradation step. The "
        "final stage makes an image step only."
    ),
    "conv": (
        "An explainable convolution. It thresholds its input X with a learned &tau; per channel "
        "into a binary mask M = &#120793;[X &gt; &tau;] (which regions activate the kernel), "
        "pools M to the kernel size and turns it into an attention A = k&sup2; softmax(pool(M)), "
        "and convolves this image with its own kernel W<sub>b</sub> = W &#8857; A (the shared W "
        "is unchanged). Top left: fraction of the input channels whose mask is on at each pixel. "
        "Top, next: the masks of the channels whose kernel is modulated most, in red over the "
        "image. Masks live at the conv's feature resolution (1/s of the image) and are shown "
        "upsampled by nearest neighbour: each feature pixel covers an s&times;s block. Bottom: the "
        "k&times;k attention of those channels (1 everywhere would leave the kernel unchanged; "
        "above 1 a kernel position is amplified, below 1 damped) and the distribution over output "
        "channels of &#8214;W<sub>b</sub> &minus; W&#8214; / &#8214;W&#8214;, how far this image's "
        "kernel departs from the shared one."
    ),
}


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "&ndash;" if value is None or math.isnan(value) else "&infin;"
    return f"{value:.{digits}f}{unit}"


def _plain(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return ""
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _grid(count: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(count, max_cols))
    return int(math.ceil(count / cols)), cols


def _trajectory_figure(exp: Explanation, path: Path) -> Path:
    panels: list[tuple[str, torch.Tensor, float | None]] = [("input D", exp.input, exp.input_psnr)]
    panels.append(("init", exp.initial_image, exp.initial_psnr))
    for k, img in enumerate(exp.stage_images):
        value = exp.stage_psnr[k] if exp.stage_psnr is not None else None
        panels.append((exp.stage_label(k), img, value))
    if exp.refined_image is not None:
        panels.append(("refinement [ours]", exp.refined_image, exp.refined_psnr))
    if exp.target is not None:
        panels.append(("clean target", exp.target, None))
    rows, cols = _grid(len(panels), 6)
    height, width = exp.input.shape[-2:]
    cell_w = 2.2
    cell_h = cell_w * height / width + 0.45
    fig = new_figure(cell_w * cols, cell_h * rows, _PURPOSE)
    for i, (label, img, value) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(to_hwc(img), interpolation="lanczos")
        title = label if value is None else f"{label}\n{_plain(value)} dB"
        ax.set_title(title, fontsize=9)
        hide_axes(ax)
    fig.suptitle("Image estimate after each stage", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _psnr_figure(exp: Explanation, path: Path) -> Path:
    fig = new_figure(6.0, 3.6, _PURPOSE)
    ax = fig.add_subplot(1, 1, 1)
    stages = list(range(0, exp.stages + 1))
    values = [exp.initial_psnr, *exp.stage_psnr]
    finite = [v if v is not None and math.isfinite(v) else np.nan for v in values]
    ax.plot(stages, finite, marker="o", color="tab:blue", label="stage estimate")
    if exp.refined_psnr is not None and math.isfinite(exp.refined_psnr):
        ax.plot([stages[-1]], [exp.refined_psnr], marker="*", markersize=12, linestyle="none",
                color="tab:orange", label=f"after the refinement [ours] ({exp.refined_psnr:.2f} dB)")
    if exp.input_psnr is not None and math.isfinite(exp.input_psnr):
        ax.axhline(exp.input_psnr, color="gray", linestyle="--",
                   label=f"input ({exp.input_psnr:.2f} dB)")
    ax.set_xticks(stages)
    ax.set_xticklabels(["init"] + [str(s) for s in stages[1:]])
    ax.set_xlabel("stage (unrolled ISN iteration)")
    ax.set_ylabel("PSNR against target (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("PSNR along the unfolding trajectory", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _robust_scale(factors: list[torch.Tensor]) -> float:
    """99.5th percentile of |entries| over the stages: a few outliers must not wash out the maps."""
    values = torch.cat([f.abs().flatten() for f in factors]).double()
    if values.numel() == 0:
        return 1.0
    if values.numel() > 2_000_000:  # torch.quantile refuses very large inputs
        keep = torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))
        values = values[keep[:2_000_000]]
    scale = float(torch.quantile(values, 0.995))
    if scale <= 0:
        scale = float(values.max())
    return scale if scale > 0 else 1.0


def _factors_figure(exp: Explanation, path: Path) -> Path:
    n = exp.stages
    blocks, cols = _grid(n, 8)
    fig = new_figure(1.8 * cols + 1.2, 3.7 * blocks, _PURPOSE)
    grid = fig.add_gridspec(
        2 * blocks, cols + 1, width_ratios=[1.0] * cols + [0.07], wspace=0.15, hspace=0.35
    )
    rows = (("P_h", "h", exp.p_h), ("P_w", "w", exp.p_w))
    scales = {key: _robust_scale(factors) for key, _, factors in rows}
    signed = exp.factor_reduction == "signed"
    reduction = "channel mean" if signed else "channel mean of |P|"
    for k in range(n):
        block, col = divmod(k, cols)
        for row, (key, sub, factors) in enumerate(rows):
            ax = fig.add_subplot(grid[2 * block + row, col])
            if signed:
                limits = dict(cmap="RdBu_r", vmin=-scales[key], vmax=scales[key])
            else:
                limits = dict(cmap="viridis", vmin=0.0, vmax=scales[key])
            image = ax.imshow(factors[k].numpy(), interpolation="nearest", **limits)
            ax.set_title(f"$P_{sub}$, {exp.stage_label(k)}", fontsize=8)
            hide_axes(ax)
            if col == 0 or k == 0:
                cax = fig.add_subplot(grid[2 * block + row, cols])
                fig.colorbar(image, cax=cax)
                cax.tick_params(labelsize=7)
                label = f"$P_{sub}$" if signed else f"$|P_{sub}|$"
                cax.set_ylabel(f"{label} ({reduction})", fontsize=8)
    fig.suptitle(
        "Degradation step: Kronecker factors of the degradation operator per stage", fontsize=11
    )
    return save_figure(fig, path)


def _updates_figure(exp: Explanation, path: Path) -> Path:
    fig = new_figure(11.0, 3.8, _PURPOSE)
    stages = np.arange(1, exp.stages + 1)
    ax = fig.add_subplot(1, 2, 1)
    energy = [exp.initial_multiplier_energy, *exp.multiplier_energy]
    ax.plot(np.arange(0, exp.stages + 1), energy, marker="o", label="RMS of $\\Lambda^k$")
    ax.plot(stages, exp.multiplier_update, marker="s", label="RMS of $\\Lambda^k - \\Lambda^{k-1}$")
    ax.set_xlabel("stage")
    ax.set_xticks(np.arange(0, exp.stages + 1))
    ax.set_title("Multiplier step (MUM)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(stages, exp.image_update, marker="o", label="image step: RMS change of the estimate")
    ax.plot(stages, exp.p_h_change, marker="^", label="degradation step: rel. change of $P_h$")
    ax.plot(stages, exp.p_w_change, marker="v", label="degradation step: rel. change of $P_w$")
    values = [*exp.image_update, *exp.p_h_change, *exp.p_w_change]
    positive = [v for v in values if math.isfinite(v) and v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("stage")
    ax.set_xticks(stages)
    ax.set_title("Image and degradation steps: size of each update", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _conv_figure(exp: Explanation, conv: ConvExplanation, path: Path) -> Path:
    shown = len(conv.channels)
    cols = shown + 1
    height, width = exp.input.shape[-2:]
    cell = 2.4
    fig = new_figure(cell * cols, cell * height / width + cell + 1.2, _PURPOSE)
    grid = fig.add_gridspec(2, cols, height_ratios=[height / width, 1.0])
    gray = to_hwc(exp.input).mean(axis=2)

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
    overlay = ax.imshow(
        conv.activation.numpy(), cmap="magma", vmin=0, vmax=1, alpha=0.65, interpolation="nearest"
    )
    fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(f"active channels\n({conv.active_fraction:.0%} of mask on)", fontsize=8)
    hide_axes(ax)
    red = np.zeros((height, width, 4), dtype=np.float32)
    red[..., 0] = 1.0
    for i, channel in enumerate(conv.channels):
        ax = fig.add_subplot(grid[0, i + 1])
        ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
        layer = red.copy()
        layer[..., 3] = conv.masks[i].numpy().astype(np.float32) * 0.55
        ax.imshow(layer, interpolation="nearest")
        on = float(conv.masks[i].float().mean())
        ax.set_title(f"mask of channel {channel}\n(red = on, {on:.0%} of pixels)", fontsize=8)
        hide_axes(ax)

    spread = max(float((conv.attention - 1).abs().max()), 1e-3)
    for i, channel in enumerate(conv.channels):
        ax = fig.add_subplot(grid[1, i + 1])
        att = conv.attention[channel].numpy()
        ax.imshow(att, cmap="RdBu_r", vmin=1 - spread, vmax=1 + spread, interpolation="nearest")
        for (r, c), value in np.ndenumerate(att):
            dark = abs(value - 1) > 0.6 * spread
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        ax.set_title(f"attention A, channel {channel}", fontsize=8)
        hide_axes(ax)
    ax = fig.add_subplot(grid[1, 0])
    ax.hist(conv.kernel_deviation.numpy(), bins=20, color="tab:purple")
    ax.set_xlabel("$\\|W_b - W\\| / \\|W\\|$ per channel", fontsize=8)
    ax.set_title(f"kernel change (overall {conv.relative_deviation:.3f})", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.suptitle(conv.title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _stage_table(exp: Explanation) -> str:
    head = [
        "stage", "PSNR (dB)", "image update (RMS)", "P<sub>h</sub> change", "P<sub>w</sub> change",
        "&Lambda; (RMS)", "&Lambda; update (RMS)", "&#8214;I&#8214;", "&#8214;&Lambda;&#8214;",
    ]
    dash = "&ndash;"
    init_psnr = _fmt(exp.initial_psnr) if exp.stage_psnr is not None else dash
    norms = exp.initial_norms or (None, None)
    rows = [[
        "init", init_psnr, dash, dash, dash, _fmt(exp.initial_multiplier_energy, 4), dash,
        _fmt(norms[0], 1), _fmt(norms[1], 1),
    ]]
    for k in range(exp.stages):
        feature = exp.feature_norms[k] if k < len(exp.feature_norms) else None
        multiplier = exp.multiplier_norms[k] if k < len(exp.multiplier_norms) else None
        rows.append([
            exp.stage_label(k),
            _fmt(exp.stage_psnr[k]) if exp.stage_psnr is not None else dash,
            _fmt(exp.image_update[k], 4),
            _fmt(exp.p_h_change[k], 4),
            _fmt(exp.p_w_change[k], 4),
            _fmt(exp.multiplier_energy[k], 4),
            _fmt(exp.multiplier_update[k], 4),
            _fmt(feature, 1),
            _fmt(multiplier, 1),
        ])
    if exp.refined_image is not None:
        psnr_text = _fmt(exp.refined_psnr) if exp.stage_psnr is not None else dash
        update = float((exp.refined_image - exp.stage_images[-1]).double().pow(2).mean().sqrt())
        rows.append(["refinement [ours]", psnr_text, _fmt(update, 4), *([dash] * 6)])
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 60em; line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _figure_html(src: str, caption: str, alt: str) -> str:
    return (
        f'<figure><a href="{html.escape(src)}">'
        f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"></a>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _conv_section(exp: Explanation, out: Path) -> str:
    parts = []
    for i, conv in enumerate(exp.convs):
        name = f"conv_{i + 1:02d}.png"
        _conv_figure(exp, conv, out / name)
        channels, h, w = conv.feature_mask.shape
        stage = conv.stage if conv.stage else "&ndash;"
        resize = f", upsampled &times;{conv.scale}" if conv.scale else ", resized"
        resize += " (nearest)"
        detail = (
            f"<p><code>{html.escape(conv.name)}</code>: stage {stage}, "
            f"{html.escape(conv.step_name)}; {html.escape(conv.description)}. "
            f"{channels} input channels at {h}&times;{w}{resize}; "
            f"{conv.active_fraction:.1%} of the mask is on; the per-sample kernel departs from "
            f"the shared one by {conv.relative_deviation:.3f} (relative Frobenius norm).</p>"
        )
        caption = CAPTIONS["conv"] if i == 0 else ""
        parts.append(detail + _figure_html(name, caption, conv.name))
    if parts:
        body = "".join(parts)
    elif exp.available_convs:
        body = "<p>No convolution was selected (pass conv names, or <code>all</code>).</p>"
    else:
        body = (
            "<p>This model has no explainable convolutions (a <code>deepsn</code> variant or "
            "<code>conv=standard</code> ablation uses plain convolutions), so there are no masks "
            "to show.</p>"
        )
    if exp.available_convs:
        body += (
            f"<details><summary>All {len(exp.available_convs)} explainable convolutions of this "
            "model</summary><pre>" + html.escape("\n".join(exp.available_convs))
            + "</pre></details>"
        )
    return "<h2>Explainable convolutions: which regions activate the kernels</h2>" + body


def write_report(explanation: Explanation, out_dir: str | Path) -> Path:
    """Write the figures, full-size stage images, numbers and ``index.html`` into ``out_dir``.

    Args:
        explanation: the result of :func:`~interir.explain.explain_image`.
        out_dir: folder to write into (created if missing; files of the same names are replaced).

    Returns:
        The path of ``index.html``; every link in it is relative, so the folder can be moved.

    Raises:
        interir.explain.MissingExtraError: matplotlib is not installed
            (``pip install "interir[viz]"``).
    """
    exp = explanation
    out = Path(out_dir)
    new_figure(1, 1, _PURPOSE)  # fail early, before writing anything, when matplotlib is missing
    out.mkdir(parents=True, exist_ok=True)

    stages_dir = out / "stages"
    stages_dir.mkdir(exist_ok=True)
    write_image(stages_dir / "input.png", exp.input)
    write_image(stages_dir / "initial.png", exp.initial_image.clamp(0, 1))
    for k, img in enumerate(exp.stage_images):
        write_image(stages_dir / f"stage_{k + 1:02d}.png", img.clamp(0, 1))
    if exp.refined_image is not None:
        write_image(stages_dir / "refined.png", exp.refined_image.clamp(0, 1))
    if exp.target is not None:
        write_image(stages_dir / "target.png", exp.target)

    sections: list[str] = []
    _trajectory_figure(exp, out / "trajectory.png")
    links = [
        '<a href="stages/input.png">input</a>',
        '<a href="stages/initial.png">init</a>',
        *(f'<a href="stages/stage_{k + 1:02d}.png">stage {k + 1}</a>' for k in range(exp.stages)),
    ]
    if exp.refined_image is not None:
        links.append('<a href="stages/refined.png">refinement</a>')
    if exp.target is not None:
        links.append('<a href="stages/target.png">target</a>')
    sections.append(
        "<h2>Image step: the unfolding trajectory</h2>"
        + _figure_html("trajectory.png", CAPTIONS["trajectory"], "image estimate after each stage")
        + "<p>Full-size images: " + ", ".join(links) + ".</p>"
    )
    if exp.stage_psnr is not None:
        _psnr_figure(exp, out / "psnr.png")
        sections.append(_figure_html("psnr.png", CAPTIONS["psnr"], "PSNR against stage"))

    _factors_figure(exp, out / "factors.png")
    rows, cols = exp.p_h[0].shape[0], exp.p_w[0].shape[0]
    size_note = (
        f"P<sub>h</sub> is {rows}&times;{rows}, P<sub>w</sub> {cols}&times;{cols} for this "
        f"{exp.input.shape[-2]}&times;{exp.input.shape[-1]} image"
        + (f" (s = {exp.downsample})." if exp.downsample else ".")
    )
    sections.append(
        "<h2>Degradation step: P<sub>h</sub> and P<sub>w</sub></h2>"
        + _figure_html("factors.png", CAPTIONS["factors"] + " " + size_note, "factors per stage")
    )
    _updates_figure(exp, out / "updates.png")
    sections.append(
        "<h2>Multiplier step and the size of every update</h2>"
        + _figure_html("updates.png", CAPTIONS["updates"], "update sizes per stage")
        + _stage_table(exp)
    )
    sections.append(_conv_section(exp, out))

    (out / "explanation.json").write_text(json.dumps(exp.to_dict(), indent=2) + "\n")
    height, width = exp.input.shape[-2:]
    summary = (
        f"Model <code>{html.escape(exp.model_name)}</code>, {exp.stages} stages, "
        f"image {height}&times;{width}."
    )
    if exp.stage_psnr is not None:
        summary += f" PSNR: input {_fmt(exp.input_psnr)} dB &rarr; output {_fmt(exp.output_psnr)} dB."
        shares = exp.gain_shares()
        if exp.refined_image is not None and shares is not None:
            summary += (
                f" The unfolded stages gave {_fmt(shares['unfolding_db'])} dB, the full-resolution "
                f"refinement [ours] {_fmt(shares['refinement_db'])} dB "
                f"({_fmt(100 * shares['refinement_share'], 0)}% of the gain)."
            )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>InterIR explanation</title><style>{_STYLE}</style></head><body>"
        "<h1>What each stage of the unfolded network did</h1>"
        f'<p>{summary} Numbers: <a href="explanation.json">explanation.json</a>.</p>'
        + "".join(sections)
        + "</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
