"""What each explainable convolution saw and how it modulated its kernel (design Eqs. 16-19).

After a forward pass every :class:`~interir.models.explainable_conv.ExplainableConv2d` keeps

- ``last_mask``: the binary mask ``M = 1[X > tau]`` of its input, ``(B, C_in, h, w)`` bool, at the
  *feature* resolution of that conv (for InterIR ``h = ceil(H / s)``: the unfolding works on
  ``PixelUnshuffle(s)`` features, so each feature pixel stands for an ``s x s`` block of the image);
- ``last_attention``: ``A = k^2 softmax(pool_kxk(M) / T_a)``, ``(B, C_in, k, k)``; ``A = 1``
  everywhere leaves the shared kernel unchanged.

:func:`explain_conv` turns these into a :class:`ConvExplanation` for one image: the masks brought
to the input's size by nearest-neighbour upsampling (so they stay binary and can be overlaid on the
image), the fraction of channels active at each pixel, the attention of every channel, and how far
the per-sample kernel ``W_b = W * A_b`` departs from the shared ``W``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interir.models.explainable_conv import ExplainableConv2d, explainable_convs

__all__ = [
    "ConvExplanation",
    "conv_role",
    "default_conv_names",
    "explain_conv",
    "resolve_conv_names",
    "upsample_mask",
]

#: Which step of the ISN iteration each InterIR block belongs to, and what it computes.
_ROLES: dict[str, tuple[str, str]] = {
    "resm.aux_block": (
        "image", "E_a(I): with the multiplier it feeds the heads that estimate the split variable "
        "Z and dS"),
    "resm.prior_block1": (
        "image", "E_1(I): inner block of the prior term E_2(E_1(I) + Lambda + Z) of the "
        "residual F"),
    "resm.prior_block2": ("image", "E_2: outer block of the prior term of the residual F"),
    "resm.jacobian_block1": (
        "image", "E_3(F): inner block of the Jacobian term E_4((1 - dS) * E_3(F)) of J^T F"),
    "resm.jacobian_block2": ("image", "E_4: outer block of the Jacobian term of J^T F"),
    "dmum.row_block": (
        "degradation", "block on [I P_w, D] whose two halves give the new row factor "
        "P_h = N(M1 M2^T)"),
    "dmum.col_block": (
        "degradation", "block on [P_h I, D] whose two halves give the new column factor "
        "P_w = N(N1^T N2)"),
    "mum.transform_block": (
        "multiplier", "E_Lambda(I): the learned K I term of the update sigma (K I - Z)"),
    "mum.aux_block": (
        "multiplier", "E_a'(I): with the multiplier it feeds the head that estimates Z"),
}

_STEP_NAMES = {
    "image": "image step (RESM)",
    "degradation": "degradation step (DMUM)",
    "multiplier": "multiplier step (MUM)",
    "other": "network layer",
}


@dataclass
class ConvExplanation:
    """One explainable convolution's explanation for one image.

    Attributes:
        name: qualified module name, e.g. ``"stages.0.resm.aux_block.depthwise"``.
        step: ``"image"``, ``"degradation"``, ``"multiplier"`` or ``"other"``.
        stage: 1-based stage the conv belongs to (``None`` outside the unfolding).
        description: what the conv's block computes in the optimisation.
        feature_mask: ``(C_in, h, w)`` bool, the mask at the conv's own (feature) resolution.
        scale: integer nearest-neighbour factor from feature to input resolution (``None`` when
            the sizes are not related by an integer factor and bilinear-free resizing was used).
        activation: ``(H, W)`` float in [0, 1], fraction of the ``C_in`` channels whose mask is on
            at each pixel, upsampled (nearest) to the input size.
        channels: indices of the input channels shown, those whose kernel is modulated most
            (largest ``||A_c - 1||``).
        masks: ``(len(channels), H, W)`` bool, their masks upsampled (nearest) to the input size.
        attention: ``(C_in, k, k)`` float, the pooled attention ``A`` of every channel.
        kernel_deviation: ``(C_out,)`` float, ``||W_b[o] - W[o]|| / ||W[o]||`` per output channel.
        relative_deviation: ``||W_b - W|| / ||W||`` over the whole kernel.
        threshold: ``(C_in,)`` float, the learned thresholds ``tau``.
    """

    name: str
    step: str
    stage: int | None
    description: str
    feature_mask: torch.Tensor
    scale: int | None
    activation: torch.Tensor
    channels: list[int]
    masks: torch.Tensor
    attention: torch.Tensor
    kernel_deviation: torch.Tensor
    relative_deviation: float
    threshold: torch.Tensor

    @property
    def step_name(self) -> str:
        """Human name of the optimisation step, e.g. ``"image step (RESM)"``."""
        return _STEP_NAMES.get(self.step, self.step)

    @property
    def active_fraction(self) -> float:
        """Fraction of all (channel, pixel) mask entries that are on, at feature resolution."""
        return float(self.feature_mask.float().mean())

    @property
    def title(self) -> str:
        where = f"stage {self.stage}, " if self.stage is not None else ""
        return f"{self.name} ({where}{self.step_name})"

    def summary(self) -> dict:
        """Numbers only, for JSON."""
        k = self.attention.shape[-1]
        return {
            "name": self.name,
            "stage": self.stage,
            "step": self.step,
            "description": self.description,
            "input_channels": int(self.feature_mask.shape[0]),
            "feature_size": list(self.feature_mask.shape[-2:]),
            "upsampling_factor": self.scale,
            "active_fraction": self.active_fraction,
            "kernel_size": [int(self.attention.shape[-2]), int(k)],
            "attention_max": float(self.attention.max()),
            "attention_min": float(self.attention.min()),
            "relative_kernel_deviation": self.relative_deviation,
            "kernel_deviation_per_channel": {
                "mean": float(self.kernel_deviation.mean()),
                "max": float(self.kernel_deviation.max()),
            },
            "shown_channels": list(self.channels),
            "threshold_mean": float(self.threshold.mean()),
        }


def conv_role(name: str, stages: int | None = None) -> tuple[str, int | None, str]:
    """Place a conv of an InterIR-style model in the optimisation.

    Args:
        name: qualified module name.
        stages: total stage count ``N`` (the final RESM is stage ``N``); ``None`` if unknown.

    Returns:
        ``(step, stage, description)``; ``step`` is ``"other"`` for names outside the unfolding.
    """
    stage: int | None = None
    rest = name
    match = re.match(r"^stages\.(\d+)\.(.*)$", name)
    if match:
        stage, rest = int(match.group(1)) + 1, match.group(2)
    elif name.startswith("final_resm."):
        stage, rest = stages, "resm." + name[len("final_resm."):]
    for key, (step, description) in _ROLES.items():
        if rest.startswith(key + "."):
            if name.startswith("final_resm."):
                description += " (final image step)"
            return step, stage, description
    return "other", stage, "convolution outside the unfolding blocks"


def _stage_key(name: str) -> str:
    match = re.match(r"^(stages\.\d+)\.", name)
    if match:
        return match.group(1)
    if name.startswith("final_resm."):
        return "final_resm"
    return name


def default_conv_names(model: nn.Module) -> list[str]:
    """A few convs worth looking at: the first explainable conv of the first, middle and last stage.

    For InterIR these are the depthwise convs of the first EPBlock (``resm.aux_block``, which reads
    the current image estimate) of stage 1, of the middle stage and of the final RESM. For other
    models with explainable convs: the first, middle and last of them. Empty for models without
    explainable convs (``deepsn`` variants, NAFNet).
    """
    names = list(explainable_convs(model))
    if not names:
        return []
    groups: dict[str, str] = {}
    for name in names:
        groups.setdefault(_stage_key(name), name)
    firsts = list(groups.values())
    picks = [firsts[0], firsts[(len(firsts) - 1) // 2], firsts[-1]]
    return list(dict.fromkeys(picks))


def resolve_conv_names(model: nn.Module, names: list[str] | None) -> list[str]:
    """Validate requested conv names; ``None`` gives :func:`default_conv_names`, ``["all"]`` all.

    Raises:
        ValueError: an unknown name, with the closest valid one and how to list them.
    """
    available = list(explainable_convs(model))
    if names is None:
        return default_conv_names(model)
    if list(names) == ["all"]:
        return available
    if names and not available:
        raise ValueError(
            "this model has no explainable convolutions (a 'deepsn'/NAFNet variant uses standard "
            "convs); drop the conv selection or explain an InterIR model"
        )
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            raise ValueError(
                f"no explainable convolution named {name!r} in this model.{hint} "
                f"List the {len(available)} valid names with `interir explain IMAGE --list-convs` "
                "or interir.models.explainable_convs(model)."
            )
    return list(dict.fromkeys(names))


def _integer_factors(feature: int, full: int) -> set[int]:
    """Every f with ceil(full / f) == feature (the pad-to-multiple-then-downsample geometry)."""
    return {f for f in range(1, full + 1) if -(-full // f) == feature}


def upsample_mask(
    mask: torch.Tensor, size: tuple[int, int], factor: int | None = None
) -> tuple[torch.Tensor, int | None]:
    """Bring a ``(..., h, w)`` mask (bool or float) to the input size ``(H, W)``, nearest neighbour.

    When the feature map is the padded input downsampled by an integer factor ``f``
    (``h = ceil(H / f)`` and ``w = ceil(W / f)``, as in InterIR), each feature pixel is repeated
    into its ``f x f`` block and the padding is cropped, which is exactly the pixel-unshuffle
    geometry. Otherwise nearest interpolation to ``(H, W)`` is used.

    Args:
        mask: ``(..., h, w)`` mask.
        size: ``(H, W)`` of the input image.
        factor: the expected factor (e.g. the model's ``downsample``); used when it fits, else
            the smallest factor that fits both sides.

    Returns:
        The mask at ``(..., H, W)`` with the input dtype, and the integer factor (or ``None``).
    """
    height, width = size
    h, w = mask.shape[-2:]
    common = _integer_factors(h, height) & _integer_factors(w, width)
    if common:
        f = factor if factor in common else min(common)
        up = mask.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        return up[..., :height, :width], f
    lead = mask.shape[:-2]
    flat = mask.reshape(-1, 1, h, w).float()
    up = F.interpolate(flat, size=(height, width), mode="nearest")
    up = up.reshape(*lead, height, width)
    return (up > 0.5 if mask.dtype == torch.bool else up.to(mask.dtype)), None


@torch.no_grad()
def explain_conv(
    name: str,
    conv: ExplainableConv2d,
    image_size: tuple[int, int],
    stages: int | None = None,
    channels: int = 4,
    sample: int = 0,
    factor: int | None = None,
) -> ConvExplanation:
    """Read one conv's explanation of its last forward pass.

    Args:
        name: qualified module name of ``conv``.
        conv: an explainable conv that has run a forward pass with ``store_explanation=True``.
        image_size: ``(H, W)`` of the network input, for the upsampled masks.
        stages: total stage count of the model, to number the final RESM.
        channels: how many input channels' masks to keep at input resolution.
        sample: which sample of the last batch to explain.
        factor: expected feature-to-image factor (the model's ``downsample``), see
            :func:`upsample_mask`.

    Raises:
        RuntimeError: the conv has not run (or does not store its explanation).
    """
    if conv.last_mask is None or conv.last_attention is None:
        raise RuntimeError(
            f"explainable conv {name!r} holds no mask: run a forward pass of the model first "
            "(with store_explanation=True, the default)"
        )
    feature_mask = conv.last_mask[sample].cpu()
    attention = conv.last_attention[sample].float().cpu()
    step, stage, description = conv_role(name, stages)

    activation, scale = upsample_mask(feature_mask.float().mean(0), image_size, factor)
    departure = (attention - 1).flatten(1).norm(dim=1)
    order = torch.argsort(departure, descending=True, stable=True)
    shown = [int(c) for c in order[: max(0, min(channels, feature_mask.shape[0]))]]
    masks, _ = upsample_mask(feature_mask[shown], image_size, factor)

    weight = conv.weight.detach().float().cpu()
    modulated = conv.per_sample_weight(conv.last_attention[sample : sample + 1].to(conv.weight))[0]
    difference = (modulated.detach().float().cpu() - weight).flatten(1).norm(dim=1)
    norms = weight.flatten(1).norm(dim=1)
    per_channel = difference / norms.clamp_min(1e-12)
    relative = float(difference.norm() / weight.norm().clamp_min(1e-12))
    return ConvExplanation(
        name=name,
        step=step,
        stage=stage,
        description=description,
        feature_mask=feature_mask,
        scale=scale,
        activation=activation,
        channels=shown,
        masks=masks,
        attention=attention,
        kernel_deviation=per_channel,
        relative_deviation=relative,
        threshold=conv.threshold.detach().float().cpu(),
    )
