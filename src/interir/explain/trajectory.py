"""The unfolding trajectory of one image: what each stage of InterIR did (design §1-2).

:func:`explain_image` runs one forward pass with :meth:`InterIR.trace` and collects, per stage,

- the image estimate ``Up(I^k) + D`` (the *image step*), its PSNR against a clean target if one is
  given, and how much the stage changed it;
- the Kronecker factors ``P_h``, ``P_w`` of the degradation operator (the *degradation step*),
  averaged over the feature channels, and how much the stage changed them;
- the size of the multiplier ``Lambda`` and of its update (the *multiplier step*), and the norms of
  the feature estimate ``I^k`` and of ``Lambda^k``;
- for networks with a full-resolution refinement ([ours]), the refined output as its own entry,
  with its PSNR and its share of the gain, so the refinement is never credited to a stage;

and, for chosen explainable convolutions, their masks, attention and kernel modulation
(:mod:`interir.explain.convs`). :func:`interir.explain.write_report` draws it all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from interir.explain.convs import ConvExplanation, explain_conv, resolve_conv_names
from interir.metrics import psnr
from interir.models.explainable_conv import explainable_convs

__all__ = ["Explanation", "explain_image"]


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).double().norm() / old.double().norm().clamp_min(1e-12))


@dataclass
class Explanation:
    """Everything :func:`explain_image` found for one image (``N`` = number of stages).

    Images are ``(3, H, W)`` float tensors on the CPU, *not* clamped (clamp to [0, 1] to display);
    factors are ``(H', H')`` / ``(W', W')`` with ``H' = ceil(H / s)``. Lists indexed by stage have
    ``N`` entries, entry ``k`` for stage ``k + 1``; stages ``1 .. N-1`` are IPBlocks (image,
    degradation and multiplier step), stage ``N`` is the final image step, which carries the last
    factors and multiplier over unchanged.

    Attributes:
        model_name: the model's registered name (or its class name).
        input: the degraded input ``D``.
        target: the clean image, or ``None``.
        initial_image: ``Up(I^0) + D`` from the initialisation alone.
        stage_images: ``N`` image estimates; the last equals the model's output.
        stage_psnr: PSNR (dB, RGB, 8-bit quantised) of each stage against ``target``, or ``None``.
        input_psnr / initial_psnr: PSNR of ``D`` and of the initial estimate, or ``None``.
        image_update: RMS (in [0, 1] units) of the change each stage made to the image estimate
            (stage 1 against the initial estimate).
        p_h / p_w: the factors after each stage, averaged over the ``C`` feature channels
            (mean of absolute values, or the signed mean; see ``factor_reduction``).
        p_h_change / p_w_change: ``||P^k - P^(k-1)|| / ||P^(k-1)||`` over all channels; ``nan``
            for a stage that made no degradation step (the final stage).
        multiplier_energy: RMS of ``Lambda^k`` after each stage.
        multiplier_update: RMS of ``Lambda^k - Lambda^(k-1)`` (the learned ``sigma (K I - Z)``);
            ``nan`` for a stage that made no multiplier step (the final stage).
        initial_multiplier_energy: RMS of ``Lambda^0`` (``nan`` when it could not be read).
        feature_norms / multiplier_norms: Frobenius norms of ``I^k`` and ``Lambda^k`` after each
            stage (feature space); ``initial_norms`` those of ``I^0`` and ``Lambda^0``.
        refined_image / refined_psnr: the output after the full-resolution refinement and its
            PSNR, or ``None`` for networks without one (then the last stage is the output).
        convs: explanations of the chosen explainable convolutions.
        available_convs: names of all explainable convolutions of the model.
        downsample: the factor ``s`` between the image and the unfolding's feature maps.
        factor_reduction: ``"abs"`` or ``"signed"``, how ``p_h``/``p_w`` were averaged.
    """

    model_name: str
    input: torch.Tensor
    target: torch.Tensor | None
    initial_image: torch.Tensor
    stage_images: list[torch.Tensor]
    stage_psnr: list[float] | None
    input_psnr: float | None
    initial_psnr: float | None
    image_update: list[float]
    p_h: list[torch.Tensor]
    p_w: list[torch.Tensor]
    p_h_change: list[float]
    p_w_change: list[float]
    multiplier_energy: list[float]
    multiplier_update: list[float]
    initial_multiplier_energy: float
    convs: list[ConvExplanation] = field(default_factory=list)
    available_convs: list[str] = field(default_factory=list)
    downsample: int | None = None
    factor_reduction: str = "abs"
    feature_norms: list[float] = field(default_factory=list)
    multiplier_norms: list[float] = field(default_factory=list)
    initial_norms: tuple[float, float] | None = None
    refined_image: torch.Tensor | None = None
    refined_psnr: float | None = None

    @property
    def stages(self) -> int:
        return len(self.stage_images)

    @property
    def output(self) -> torch.Tensor:
        """The network output (the refined image, else the last stage's estimate), ``(3, H, W)``."""
        return self.stage_images[-1] if self.refined_image is None else self.refined_image

    @property
    def output_psnr(self) -> float | None:
        """PSNR of the network output, or ``None`` without a target."""
        if self.stage_psnr is None:
            return None
        return self.stage_psnr[-1] if self.refined_image is None else self.refined_psnr

    def gain_shares(self) -> dict[str, float] | None:
        """Shares of the PSNR gain (output minus input) made by the unfolding and the refinement.

        ``{"total_db", "unfolding_db", "refinement_db", "unfolding_share", "refinement_share"}``;
        ``None`` without a target. Shares are fractions of the total (they may fall outside
        [0, 1] when one part loses what the other gains, and are ``nan`` for a zero total).
        """
        if self.stage_psnr is None or self.input_psnr is None:
            return None
        unfolding = self.stage_psnr[-1] - self.input_psnr
        refinement = 0.0 if self.refined_psnr is None else self.refined_psnr - self.stage_psnr[-1]
        total = unfolding + refinement
        share = (lambda v: v / total) if abs(total) > 1e-9 else (lambda v: math.nan)
        return {
            "total_db": total, "unfolding_db": unfolding, "refinement_db": refinement,
            "unfolding_share": share(unfolding), "refinement_share": share(refinement),
        }

    def stage_label(self, index: int) -> str:
        """Short label of stage ``index`` (0-based): ``"stage 3"`` or ``"stage 5 (final)"``."""
        return f"stage {index + 1}" + (" (final)" if index == self.stages - 1 else "")

    def to_dict(self) -> dict:
        """The numbers of the explanation (no images), JSON-serialisable (``nan`` -> ``None``)."""

        def clean(values):
            if values is None:
                return None
            if isinstance(values, float):
                return None if math.isnan(values) or math.isinf(values) else values
            return [clean(float(v)) for v in values]

        height, width = self.input.shape[-2:]
        return {
            "model": self.model_name,
            "image_size": [int(height), int(width)],
            "stages": self.stages,
            "downsample": self.downsample,
            "psnr": None
            if self.stage_psnr is None
            else {
                "input": clean(self.input_psnr),
                "initial": clean(self.initial_psnr),
                "per_stage": clean(self.stage_psnr),
                "settings": "RGB, 8-bit quantised, no border crop (interir.metrics.psnr defaults)",
            },
            "image_update_rms": clean(self.image_update),
            "p_h_relative_change": clean(self.p_h_change),
            "p_w_relative_change": clean(self.p_w_change),
            "factor_sizes": {"p_h": list(self.p_h[0].shape), "p_w": list(self.p_w[0].shape)},
            "factor_reduction": self.factor_reduction,
            "multiplier_rms": clean(self.multiplier_energy),
            "multiplier_update_rms": clean(self.multiplier_update),
            "initial_multiplier_rms": clean(self.initial_multiplier_energy),
            "feature_norm": clean(self.feature_norms),
            "multiplier_norm": clean(self.multiplier_norms),
            "initial_norms": None if self.initial_norms is None else clean(list(self.initial_norms)),
            "refinement": None if self.refined_image is None else {
                "psnr": clean(self.refined_psnr), "gain": self._clean_gain(clean),
            },
            "gain_shares": self._clean_gain(clean),
            "convs": [c.summary() for c in self.convs],
            "available_convs": list(self.available_convs),
        }

    def _clean_gain(self, clean) -> dict | None:
        shares = self.gain_shares()
        return None if shares is None else {k: clean(float(v)) for k, v in shares.items()}


def _as_single(image: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{what} must be a torch.Tensor (read files with interir.utils.io.read_image)"
        )
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(
                f"{what}: explain one image at a time, got a batch of {image.shape[0]}"
            )
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(
            f"{what} must have shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}"
        )
    return image.float()


@torch.no_grad()
def explain_image(
    model: nn.Module,
    image: torch.Tensor,
    target: torch.Tensor | None = None,
    conv_names: list[str] | None = None,
    channels: int = 4,
    factor_reduction: str = "abs",
) -> Explanation:
    """Run ``model`` on one image and record what each stage and the chosen convolutions did.

    Args:
        model: an unfolding network with ``trace(x) -> UnfoldingTrace`` (every InterIR and
            ``deepsn`` variant). It is put in eval mode for the pass and restored afterwards.
        image: degraded image ``(3, H, W)`` or ``(1, 3, H, W)``, float in [0, 1].
        target: optional clean image of the same shape, for per-stage PSNR.
        conv_names: explainable convolutions to explain; ``None`` picks
            :func:`~interir.explain.convs.default_conv_names`, ``["all"]`` takes every one,
            ``[]`` none. Models without explainable convs (``deepsn``) give no conv explanations.
        channels: how many channels' masks to keep per conv at input resolution.
        factor_reduction: how ``P_h``/``P_w`` are averaged over the ``C`` channels for display:
            ``"abs"`` (default) the mean of absolute values, where each channel's operator puts
            its weight whatever the (arbitrary) sign of the learned features that built it;
            ``"signed"`` the plain mean, in which channels of opposite sign cancel.

    Returns:
        An :class:`Explanation`; its ``output`` equals ``model(image)``.
    """
    if not hasattr(model, "trace"):
        raise TypeError(
            f"{type(model).__name__} has no trace(): the trajectory needs an unfolding model "
            "(an InterIR or deepsn variant, see `interir models`)"
        )
    x = _as_single(image, "image")
    if target is not None:
        target = _as_single(target, "target")
        if target.shape != x.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} differs from the image's {tuple(x.shape)}; "
                "pass the clean image of the same scene at the same size"
            )
    if factor_reduction not in ("abs", "signed"):
        raise ValueError(f"factor_reduction must be 'abs' or 'signed', got {factor_reduction!r}")
    names = resolve_conv_names(model, conv_names)
    convs = explainable_convs(model)
    device = next(model.parameters()).device
    batch = x.unsqueeze(0).to(device)

    # Lambda^0 and P^0 come from the initialisation module; a forward hook reads them without
    # changing the model (the trace starts after stage 1).
    initial: dict[str, torch.Tensor] = {}
    handle = None
    init_module = getattr(model, "init", None)
    if isinstance(init_module, nn.Module):
        def keep(_module, _inputs, output):
            if isinstance(output, tuple) and len(output) == 4:
                initial.update(multiplier=output[1], p_h=output[2], p_w=output[3])
        handle = init_module.register_forward_hook(keep)

    stored = {name: conv.store_explanation for name, conv in convs.items()}
    was_training = model.training
    try:
        for conv in convs.values():
            conv.store_explanation = True
        model.eval()
        trace = model.trace(batch)
    finally:
        if handle is not None:
            handle.remove()
        for name, conv in convs.items():
            conv.store_explanation = stored[name]
        model.train(was_training)

    stage_images = [img[0].float().cpu() for img in trace.images]
    initial_image = trace.initial_image[0].float().cpu()
    refined = None if getattr(trace, "refined", None) is None else trace.refined[0].float().cpu()
    stage_psnr = input_psnr = initial_psnr = refined_psnr = None
    if target is not None:
        extra = [] if refined is None else [refined]
        stack = torch.stack([x, initial_image, *stage_images, *extra])
        values = psnr(stack, target.unsqueeze(0).expand_as(stack)).tolist()
        if refined is not None:
            refined_psnr = values.pop()
        input_psnr, initial_psnr, stage_psnr = values[0], values[1], values[2:]
    norms = getattr(trace, "initial_norms", None)

    previous_images = [initial_image, *stage_images[:-1]]
    image_update = [_rms(a - b) for a, b in zip(stage_images, previous_images)]

    def changes(factors: list[torch.Tensor], first: torch.Tensor | None) -> list[float]:
        before = [first, *factors[:-1]]
        # nan where the stage made no degradation step (the final stage carries the factors over)
        return [
            math.nan if b is None or torch.equal(a, b) else _relative_change(a, b)
            for a, b in zip(factors, before)
        ]

    p_h_full = [p[0].float().cpu() for p in trace.p_h]
    p_w_full = [p[0].float().cpu() for p in trace.p_w]
    lam = [m[0].float().cpu() for m in trace.multipliers]
    lam0 = initial["multiplier"][0].float().cpu() if "multiplier" in initial else None
    ph0 = initial["p_h"][0].float().cpu() if "p_h" in initial else None
    pw0 = initial["p_w"][0].float().cpu() if "p_w" in initial else None
    initial_factors = getattr(trace, "initial_factors", None)
    if initial_factors is not None:  # square even when the network carries low-rank factors
        ph0, pw0 = (f[0].float().cpu() for f in initial_factors)

    config = getattr(model, "config", None)
    height, width = x.shape[-2:]
    explained = [
        explain_conv(
            name, convs[name], (height, width), stages=len(stage_images), channels=channels,
            factor=getattr(config, "downsample", None),
        )
        for name in names
    ]
    return Explanation(
        model_name=str(getattr(model, "model_name", type(model).__name__)),
        input=x.cpu(),
        target=None if target is None else target.cpu(),
        initial_image=initial_image,
        stage_images=stage_images,
        stage_psnr=stage_psnr,
        input_psnr=input_psnr,
        initial_psnr=initial_psnr,
        image_update=image_update,
        p_h=[(p.abs() if factor_reduction == "abs" else p).mean(0) for p in p_h_full],
        p_w=[(p.abs() if factor_reduction == "abs" else p).mean(0) for p in p_w_full],
        factor_reduction=factor_reduction,
        p_h_change=changes(p_h_full, ph0),
        p_w_change=changes(p_w_full, pw0),
        multiplier_energy=[_rms(m) for m in lam],
        multiplier_update=[
            math.nan if b is None or torch.equal(a, b) else _rms(a - b)
            for a, b in zip(lam, [lam0, *lam[:-1]])
        ],
        initial_multiplier_energy=math.nan if lam0 is None else _rms(lam0),
        convs=explained,
        available_convs=list(convs),
        downsample=getattr(config, "downsample", None),
        feature_norms=[float(n[0]) for n in getattr(trace, "image_norms", [])],
        multiplier_norms=[float(n[0]) for n in getattr(trace, "multiplier_norms", [])],
        initial_norms=None if norms is None else (float(norms[0][0]), float(norms[1][0])),
        refined_image=refined,
        refined_psnr=refined_psnr,
    )
