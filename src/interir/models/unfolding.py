"""InterIR: the unfolded improved semi-smooth Newton (ISN) network (design §1-2).

The network unrolls the ISN iteration for the degradation model ``D = P(I) + N`` with a
Kronecker-factored operator ``P`` (see :mod:`interir.models.kronecker`). Working on features at
``1/s`` of the input resolution, it carries three variables through its stages:

- the image estimate ``I`` (``(B, C, H', W')``),
- the multiplier ``Lambda`` of the augmented Lagrangian (same shape),
- the degradation factors ``P_h`` (``(B, C, H', H')``) and ``P_w`` (``(B, C, W', W')``).

Each stage (IPBlock) runs the three steps of ISN:

- :class:`RESM`, the image step (Eq. 12): a learned gradient step on 1/2 ||F||^2;
- :class:`DMUM`, the degradation step (Eq. 13): refit ``P_h`` then ``P_w``;
- :class:`MUM`, the multiplier step (Eq. 14): ``Lambda <- Lambda + sigma (K I - Z)``, learned.

A final RESM with its own weights gives ``I^N``; the output is ``Up(I^N) + D`` (Eq. 2).

Ablation switches (paper Table 4), each a field of :class:`InterIRConfig`:

- ``conv``: ``"explainable"`` (EPBlock) or ``"standard"`` (NAFBlock) depthwise convs;
- ``resm``: ``"interir"`` (learned weights ``w1, w2, w3`` on the three terms of F, Eq. 31) or
  ``"deepsn"`` (the plain subtraction of DeepSN-Net, Eq. 28);
- ``dmum_mum``: ``"interir"`` (learned additive blending of factor and multiplier updates) or
  ``"deepsn"`` (replace the factors; add the raw multiplier update).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from interir.models.epblock import EPBlock
from interir.models.kronecker import KroneckerOperator, LowRankKronecker, frobenius_normalize
from interir.models.layers import WindowedMeanPool, check_image_batch, crop_to, pad_to_multiple


@dataclass(frozen=True)
class InterIRConfig:
    """Sizes and ablation switches of an InterIR network.

    Attributes:
        width: working channels ``C``.
        stages: number of stages ``N`` (``N - 1`` IPBlocks plus the final RESM).
        downsample: factor ``s`` of the pixel-unshuffle; the unfolding runs at ``H/s x W/s``.
        head_expansion: hidden width factor of the 1x1 heads phi (DeepSN-Net uses 16).
        dw_expansion, ffn_expansion: EPBlock expansions (NAFBlock uses 2 and 2).
        conv, resm, dmum_mum: the paper's Table-4 ablation switches (see module docstring).
        step_size_init: initial learnable step size of each image step ([ours]: the paper's lambda).
        weight_hidden: hidden width of the small weight networks of the InterIR forms, as a
            fraction of ``C`` ([ours]).
        refine_blocks: [ours] EPBlocks of a full-resolution refinement after the output,
            ``out = y + Refine(y)`` with ``y = Up(I^N) + D`` (0, the paper's network: none). The
            unfolding runs at ``1/s`` resolution and only Up's last 3x3 conv sees full-resolution
            pixels; at CPU budgets that makes the network learn denoising very slowly
            (benchmarks/results/noise_probe.md), and a small refinement removes the gap.
        refine_width: channels of the refinement.
        airlight_stats: [ours] add to the down-sampled input features a zero-initialised 1x1
            projection of whole-image statistics: per colour channel, the brightest and the
            darkest ``s x s`` block average. Convolutions and the Kronecker factors see local
            values and averages, not extremes; without them the network cannot tell a white
            airlight from a gray one and falls back on the middle of its training range
            (benchmarks/results/haze_probes.md). Zero-initialised, so adding it to a trained
            network changes nothing until it is trained.
        pool_window: [ours] side, in input pixels, of the window over which every EPBlock's
            channel attention averages (NAFNet's test-time local converter, see
            :class:`~interir.models.layers.WindowedMeanPool`); 0 (the paper's network) pools the
            whole image. Blocks at ``1/s`` resolution use ``pool_window // s``. It has no
            parameters: set it on a trained network to change how it runs on large images (Chu et
            al. use 1.5 x the training patch; benchmarks/results/haze_probes.md sections 6-7
            measure 192-384 px), or train with it. Images no larger than the window are unaffected.
        stage_update: how the InterIR forms (``resm``/``dmum_mum`` = ``"interir"``) update each
            variable. ``"subtract"`` (v1, how every checkpoint before core v2 was trained):
            ``I <- I - lambda V`` with term weights starting at (1, -1, 1), i.e. exactly DeepSN-Net's
            subtraction, and factor/multiplier blends starting at 1. ``"add"`` (v2): [paper] the
            supplement's additive form, term weights starting at (+1, +1, +1); [ours] every update
            is gated by a zero-initialised per-channel weight (NAFNet's beta),
            ``I <- I + beta * V``, ``P <- N(P + gamma * dP)``, ``Lambda <- Lambda + rho * dLambda``,
            so a fresh stage is exactly the identity and cannot shrink the estimate. The
            ``"deepsn"`` forms are DeepSN-Net's and ignore this switch.
        output_skip: ``"input"`` ([paper] Eq. 2): ``out = Up(I^N) + D``. ``"init"`` ([ours]):
            ``out = Up(I^N - I^0) + D``: the image-space output is what the stages changed, so a
            network whose stages are the identity returns its input, and every stage's estimate
            ``Up(I^k - I^0) + D`` is an image one can score.
        factor_init: ``"gram"`` ([paper] Eq. 11): ``P_h^0 = N(D D^T)``. ``"centred"`` ([ours]):
            the Gram matrices (also DMUM's refits) of features with their per-channel mean
            removed; the plain Gram of positive features is dominated by the mean, so the factors
            start and stay nearly rank 1 and ``P^T P I`` carries little local information.
        dmum_expansion: [ours] channel expansion of DMUM's two EPBlocks (v1: 2, as every block).
        down_up: ``"pixel"`` ([paper] as we read Eq. 2): Down = PixelUnshuffle + 3x3 conv, Up =
            1x1 conv + PixelShuffle + 3x3 conv, both linear. ``"learned"`` ([ours]): Down and Up
            each hold a full-resolution EPBlock of ``down_up_width`` channels (a learned encoder
            and decoder around the unfolding). With ``output_skip="init"`` the output is
            ``D + Up(I^N) - Up(I^0)``, so identity stages still return the input exactly and any
            gain is the stages' work, decoded at full resolution.
        down_up_width: channels of the learned Down/Up's full-resolution EPBlocks.

        Core-v3 options (issue 25; docs/architecture.md, benchmarks/results/architecture_probes.md):

        detail_skip: [ours] with ``down_up="learned"``, Up's full-resolution EPBlock also sees
            Down's full-resolution features (added after the PixelShuffle): fine detail and noise
            no longer reach the output only through the ``1/s`` squeeze. Adds no parameters; with
            ``output_skip="init"`` identity stages still return the input exactly.
        data_term: ``"free"`` (v2): ``F = w1 P^T P I + w2 P^T D + w3 E2(...)`` with three free
            weights (training turned the residual into a sum, w2 > 0). ``"residual"`` ([paper]
            Eq. 8's residual kept): ``F = w_d P^T (P I - D) + w3 E2(...)`` with one non-negative
            weight ``w_d = softplus(.)`` on the whole data residual, so its sign is the
            physics'; only the magnitudes and the image update's gate are learned.
        operator: ``"gram"`` ([paper] Eq. 11/13): square factors from Gram matrices, refit by
            DMUM's EPBlocks. ``"lowrank"`` ([ours]): rank-``operator_rank`` factors
            ``P_h = A_h B_h^T`` predicted from row and column profiles (the features averaged
            along the other axis) by a 1-D conv, at the start from ``D`` and in each degradation
            step from ``[I, D]``, replacing DMUM's blocks (:class:`LowRankKronecker`).
        operator_rank: rank ``r`` of the ``"lowrank"`` factors.
        coarse_prior: [ours] the prior term gains a branch at half the working resolution
            (PixelUnshuffle(2), one EPBlock of width ``2C``, back by PixelShuffle(2)), so each
            stage sees context at ``1/(2s)`` as NAFNet's deeper levels do.
        attention_gain: ``"fixed"`` (design Eq. 18, temperature 1) or ``"learned"`` ([ours]): every
            explainable conv learns its softmax's inverse temperature per channel.
    """

    width: int = 92
    stages: int = 15
    downsample: int = 8
    head_expansion: int = 16
    dw_expansion: int = 2
    ffn_expansion: int = 2
    conv: Literal["explainable", "standard"] = "explainable"
    resm: Literal["interir", "deepsn"] = "interir"
    dmum_mum: Literal["interir", "deepsn"] = "interir"
    step_size_init: float = 0.01
    weight_hidden: float = 0.5
    refine_blocks: int = 0
    refine_width: int = 16
    airlight_stats: bool = False
    pool_window: int = 0
    stage_update: Literal["subtract", "add"] = "subtract"
    output_skip: Literal["input", "init"] = "input"
    factor_init: Literal["gram", "centred"] = "gram"
    dmum_expansion: int = 2
    down_up: Literal["pixel", "learned"] = "pixel"
    down_up_width: int = 16
    detail_skip: bool = False
    data_term: Literal["free", "residual"] = "free"
    operator: Literal["gram", "lowrank"] = "gram"
    operator_rank: int = 2
    coarse_prior: bool = False
    attention_gain: Literal["fixed", "learned"] = "fixed"

    def __post_init__(self) -> None:
        for name in ("refine_blocks", "pool_window"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        for name in (
            "width", "stages", "downsample", "head_expansion", "dw_expansion", "ffn_expansion", "refine_width",
            "dmum_expansion", "down_up_width", "operator_rank",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        choices = {
            "conv": ("explainable", "standard"), "resm": ("interir", "deepsn"), "dmum_mum": ("interir", "deepsn"),
            "stage_update": ("subtract", "add"), "output_skip": ("input", "init"), "factor_init": ("gram", "centred"),
            "down_up": ("pixel", "learned"), "data_term": ("free", "residual"), "operator": ("gram", "lowrank"),
            "attention_gain": ("fixed", "learned"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.detail_skip and self.down_up != "learned":
            raise ValueError("detail_skip needs down_up='learned' (the skip joins Down's and Up's full-resolution blocks)")

    @property
    def explainable(self) -> bool:
        return self.conv == "explainable"

    @property
    def size_multiple(self) -> int:
        """Height and width are padded to a multiple of this (``s``, or ``2s`` with ``coarse_prior``)."""
        return self.downsample * (2 if self.coarse_prior else 1)

    @property
    def additive(self) -> bool:
        """True when the InterIR forms use the v2 gated, additive updates."""
        return self.stage_update == "add"

    def block_window(self, full_resolution: bool) -> int:
        """Pooling window, in the block's own pixels, of an EPBlock at full or ``1/s`` resolution."""
        window = self.pool_window if full_resolution else self.pool_window // self.downsample
        return 1 if self.pool_window and window == 0 else window

    def epblock(self, channels: int, full_resolution: bool = False, expansion: int | None = None) -> EPBlock:
        """An EPBlock of this network: its conv switch, expansions and pooling window."""
        window = self.block_window(full_resolution)
        dw, ffn = (self.dw_expansion, self.ffn_expansion) if expansion is None else (expansion, expansion)
        return EPBlock(
            channels, self.explainable, dw, ffn, pool_window=window,
            learn_attention_gain=self.attention_gain == "learned",
        )


# softplus(SOFTPLUS_ONE) == 1: the raw value that starts the residual data term's weight at 1.
SOFTPLUS_ONE = math.log(math.e - 1.0)


def gram_factors(features: torch.Tensor, centred: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N(X X^T), N(X^T X))`` per (sample, channel) of ``X`` ``(B, C, H', W')``.

    With ``centred`` each channel's mean is removed first (see ``InterIRConfig.factor_init``).
    """
    if centred:
        features = features - features.mean(dim=(-2, -1), keepdim=True)
    return (
        frobenius_normalize(features @ features.transpose(-1, -2)),
        frobenius_normalize(features.transpose(-1, -2) @ features),
    )


def centre(features: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Remove each channel's spatial mean when ``enabled`` (``factor_init="centred"``)."""
    return features - features.mean(dim=(-2, -1), keepdim=True) if enabled else features


class PointwiseHead(nn.Module):
    """phi: 1x1 conv C -> eC, ReLU, 1x1 conv eC -> C (the heads estimating Z and dS in RESM)."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * expansion, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels * expansion, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class WeightNet(nn.Module):
    """The paper's "Convs": 1x1 convs with a ReLU between them, producing per-pixel weights.

    The last conv starts with zero weights and a bias equal to ``init``, so at initialisation the
    weights are exactly ``init`` everywhere and the InterIR forms reduce to the DeepSN-Net ones.

    Args:
        in_channels: channels of the concatenated inputs.
        init: one initial value per group of ``group_channels`` output channels.
        group_channels: output channels per weight (usually ``C``).
        hidden: hidden channels.
        pooled: compute one weight per channel from globally pooled inputs instead of per pixel.
    """

    def __init__(
        self, in_channels: int, init: tuple[float, ...], group_channels: int, hidden: int, pooled: bool = False
    ) -> None:
        super().__init__()
        out_channels = len(init) * group_channels
        self.pool = nn.AdaptiveAvgPool2d(1) if pooled else nn.Identity()
        self.hidden = nn.Conv2d(in_channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Conv2d(hidden, out_channels, 1)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor(init).repeat_interleave(group_channels))
        self.groups = len(init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.out(self.act(self.hidden(self.pool(x)))).chunk(self.groups, dim=1)


class InitModule(nn.Module):
    """Eq. 11: ``I^0 = D``, ``Lambda^0 = conv1x1(D) + D``, ``P_h^0 = N(D D^T)``, ``P_w^0 = N(D^T D)``."""

    def __init__(self, channels: int, centred: bool = False) -> None:
        super().__init__()
        self.multiplier_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.centred = centred

    def forward(self, degraded: torch.Tensor):
        multiplier = self.multiplier_conv(degraded) + degraded
        p_h, p_w = gram_factors(degraded, self.centred)
        return degraded, multiplier, p_h, p_w


class RESM(nn.Module):
    """Image step (Eq. 12, ISN Eq. 9): ``I <- I - lambda * J^T F``.

    1. ``aux = E_a(I) + Lambda``; ``Z = phi1(aux)`` (split variable), ``S = phi2(aux)`` (dS).
    2. ``F = P^T P I - P^T D + E2(E1(I) + Lambda + Z)`` (``resm="deepsn"``), or with learned
       per-pixel weights ``F = w1 P^T P I + w2 P^T D + w3 E2(...)``, ``w`` starting at (1, -1, 1)
       (``resm="interir"``, the paper's additive form that cannot cancel to zero).
    3. ``V = P^T P F + E4((1 - S) * E3(F))`` (``J^T F``).
    4. ``I <- I - lambda V`` with a learnable step size ``lambda`` per stage; with
       ``stage_update="add"`` (v2) the InterIR form instead adds, ``w`` start at (+1, +1, +1) and
       ``I <- I + beta * V`` with a per-channel ``beta`` starting at zero (the stage starts as the
       identity).
    """

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        c = config.width
        self.aux_block = config.epblock(c)
        self.split_head = PointwiseHead(c, config.head_expansion)
        self.derivative_head = PointwiseHead(c, config.head_expansion)
        self.prior_block1 = config.epblock(c)
        self.prior_block2 = config.epblock(c)
        self.jacobian_block1 = config.epblock(c)
        self.jacobian_block2 = config.epblock(c)
        self.form = config.resm
        self.gated = self.form == "interir" and config.additive
        if self.gated:
            self.update_gate = nn.Parameter(torch.zeros(1, c, 1, 1))
        else:
            self.step_size = nn.Parameter(torch.tensor(float(config.step_size_init)))
        self.residual_data_term = self.form == "interir" and config.data_term == "residual"
        if self.form == "interir":
            hidden = max(1, int(c * config.weight_hidden))
            if self.residual_data_term:
                init = (SOFTPLUS_ONE, 1.0)  # w_d = softplus(raw) starts at 1, w3 at 1
            else:
                init = (1.0, 1.0, 1.0) if config.additive else (1.0, -1.0, 1.0)
            self.term_weights = WeightNet(3 * c, init, c, hidden)
        self.coarse = CoarseBranch(config) if config.coarse_prior else None

    def forward(
        self, image: torch.Tensor, multiplier: torch.Tensor, degraded: torch.Tensor, operator: KroneckerOperator
    ) -> torch.Tensor:
        aux = self.aux_block(image) + multiplier
        split = self.split_head(aux)
        derivative = self.derivative_head(aux)
        data_term = operator.normal(image)
        back_projection = operator.adjoint(degraded)
        prior_term = self.prior_block2(self.prior_block1(image) + multiplier + split)
        if self.coarse is not None:
            prior_term = prior_term + self.coarse(image)
        if self.residual_data_term:
            raw_data_weight, w3 = self.term_weights(torch.cat([image, degraded, multiplier], dim=1))
            residual = F.softplus(raw_data_weight) * (data_term - back_projection) + w3 * prior_term
        elif self.form == "interir":
            w1, w2, w3 = self.term_weights(torch.cat([image, degraded, multiplier], dim=1))
            residual = w1 * data_term + w2 * back_projection + w3 * prior_term
        else:
            residual = data_term - back_projection + prior_term
        direction = operator.normal(residual) + self.jacobian_block2((1 - derivative) * self.jacobian_block1(residual))
        if self.gated:
            return image + self.update_gate * direction
        return image - self.step_size * direction


class DMUM(nn.Module):
    """Degradation step (Eq. 13): refit ``P_h`` (with the new I and old ``P_w``), then ``P_w``.

    ``[I P_w, D] -> block -> (M1, M2)``, ``P_h <- N(M1 M2^T)``; ``[P_h I, D] -> block -> (N1, N2)``,
    ``P_w <- N(N1^T N2)`` (``dmum_mum="deepsn"``: replace, as DeepSN-Net). With ``"interir"`` the new
    estimate is blended in additively, ``P_h <- N(P_h + gamma * N(M1 M2^T))``, with per-channel
    ``gamma`` from a small weight network on the block output (starting at 1; at 0 with
    ``stage_update="add"``, so the factors start unchanged).
    """

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        c = config.width
        self.row_block = config.epblock(2 * c, expansion=config.dmum_expansion)
        self.col_block = config.epblock(2 * c, expansion=config.dmum_expansion)
        self.form = config.dmum_mum
        self.centred = config.factor_init == "centred"
        if self.form == "interir":
            hidden = max(1, int(c * config.weight_hidden))
            init = (0.0,) if config.additive else (1.0,)
            self.row_weight = WeightNet(2 * c, init, c, hidden, pooled=True)
            self.col_weight = WeightNet(2 * c, init, c, hidden, pooled=True)

    def forward(self, image: torch.Tensor, degraded: torch.Tensor, p_h: torch.Tensor, p_w: torch.Tensor):
        features = self.row_block(torch.cat([image @ p_w, degraded], dim=1))
        m1, m2 = centre(features, self.centred).chunk(2, dim=1)
        row_update = frobenius_normalize(m1 @ m2.transpose(-1, -2))
        if self.form == "interir":
            (gamma,) = self.row_weight(features)
            p_h = frobenius_normalize(p_h + gamma * row_update)
        else:
            p_h = row_update
        features = self.col_block(torch.cat([p_h @ image, degraded], dim=1))
        n1, n2 = centre(features, self.centred).chunk(2, dim=1)
        col_update = frobenius_normalize(n1.transpose(-1, -2) @ n2)
        if self.form == "interir":
            (gamma,) = self.col_weight(features)
            p_w = frobenius_normalize(p_w + gamma * col_update)
        else:
            p_w = col_update
        return p_h, p_w


class MUM(nn.Module):
    """Multiplier step (Eq. 14): ``Lambda <- Lambda + rho * (E_L(I) - phi1'(E_a'(I) + Lambda))``.

    The bracket is the learned ``sigma (K I - Z)``; ``rho`` is 1 for ``dmum_mum="deepsn"`` and a
    per-pixel learned map for ``"interir"`` (starting at 1; at 0 with ``stage_update="add"``).
    """

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        c = config.width
        self.transform_block = config.epblock(c)
        self.aux_block = config.epblock(c)
        self.split_head = PointwiseHead(c, config.head_expansion)
        self.form = config.dmum_mum
        if self.form == "interir":
            hidden = max(1, int(c * config.weight_hidden))
            self.rate = WeightNet(2 * c, (0.0,) if config.additive else (1.0,), c, hidden)

    def forward(self, image: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        update = self.transform_block(image) - self.split_head(self.aux_block(image) + multiplier)
        if self.form == "interir":
            (rho,) = self.rate(torch.cat([image, multiplier], dim=1))
            update = rho * update
        return multiplier + update


class CoarseBranch(nn.Module):
    """[ours] ``(B, C, H', W') -> (B, C, H', W')`` through one EPBlock at half the resolution:
    PixelUnshuffle(2), 1x1 conv ``4C -> 2C``, EPBlock(2C), 1x1 conv ``2C -> 4C``, PixelShuffle(2).
    ``H', W'`` must be even (the network pads to ``config.size_multiple``)."""

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        c = config.width
        self.body = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(4 * c, 2 * c, 1), config.epblock(2 * c),
            nn.Conv2d(2 * c, 4 * c, 1), nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ProfileFactors(nn.Module):
    """[ours] Low-rank factors predicted from features: ``(B, C_in, H', W')`` -> packed
    ``(B, C, H', 2r)`` and ``(B, C, W', 2r)`` (see :class:`LowRankKronecker`).

    Row profiles (features averaged over W') go through a 1-D conv (kernel 3) to ``2r`` vectors
    of length ``H'`` per working channel; column profiles likewise with their own conv.
    """

    def __init__(self, in_channels: int, channels: int, rank: int) -> None:
        super().__init__()
        self.channels, self.rank = channels, rank
        self.rows = nn.Conv1d(in_channels, channels * 2 * rank, 3, padding=1)
        self.cols = nn.Conv1d(in_channels, channels * 2 * rank, 3, padding=1)

    def _pack(self, conv: nn.Conv1d, profile: torch.Tensor) -> torch.Tensor:
        out = conv(profile)  # (B, C * 2r, n)
        return out.view(out.shape[0], self.channels, 2 * self.rank, -1).transpose(-1, -2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._pack(self.rows, features.mean(dim=-1)), self._pack(self.cols, features.mean(dim=-2))


class LowRankInit(nn.Module):
    """Eq. 11 with ``operator="lowrank"``: ``I^0 = D``, ``Lambda^0 = conv1x1(D) + D``, factors
    predicted from ``D`` (:class:`ProfileFactors`). Returns ``(I, Lambda, packed_h, packed_w)``."""

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        c = config.width
        self.multiplier_conv = nn.Conv2d(c, c, 1, bias=False)
        self.factors = ProfileFactors(c, c, config.operator_rank)

    def forward(self, degraded: torch.Tensor):
        return (degraded, self.multiplier_conv(degraded) + degraded, *self.factors(degraded))


class LowRankDMUM(nn.Module):
    """Degradation step with ``operator="lowrank"``: new factors predicted from ``[I, D]``
    (replacing the old ones; the image update, gated at zero, keeps a fresh stage the identity)."""

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        self.factors = ProfileFactors(2 * config.width, config.width, config.operator_rank)

    def forward(self, image: torch.Tensor, degraded: torch.Tensor, p_h: torch.Tensor, p_w: torch.Tensor):
        return self.factors(torch.cat([image, degraded], dim=1))


def make_operator(config: InterIRConfig, p_h: torch.Tensor, p_w: torch.Tensor):
    """The operator of the stage state's factors: square (``"gram"``) or packed low-rank."""
    return LowRankKronecker(p_h, p_w) if config.operator == "lowrank" else KroneckerOperator(p_h, p_w)


class IPBlock(nn.Module):
    """One unfolding stage: RESM, then DMUM, then MUM, each using the freshest variables."""

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        self.config = config
        self.resm = RESM(config)
        self.dmum = LowRankDMUM(config) if config.operator == "lowrank" else DMUM(config)
        self.mum = MUM(config)

    def forward(self, image, multiplier, degraded, p_h, p_w):
        image = self.resm(image, multiplier, degraded, make_operator(self.config, p_h, p_w))
        p_h, p_w = self.dmum(image, degraded, p_h, p_w)
        multiplier = self.mum(image, multiplier)
        return image, multiplier, p_h, p_w


@dataclass
class UnfoldingTrace:
    """What each stage of a forward pass produced, for interpretability.

    There is one entry per stage (``config.stages`` in all): ``images[k]`` is the image estimate
    after stage k at the input size ``(B, 3, H, W)`` (``Up(I^k) + D``, or ``Up(I^k - I^0) + D``
    with ``output_skip="init"``); ``p_h[k]``/``p_w[k]`` the factors after stage k
    (``(B, C, H', H')``/``(B, C, W', W')``; the final RESM keeps the last ones);
    ``multipliers[k]`` the multiplier ``(B, C, H', W')``; ``image_norms[k]`` and
    ``multiplier_norms[k]`` the Frobenius norms ``(B,)`` of ``I^k`` and ``Lambda^k``.
    ``initial_image`` is the estimate from the initialisation alone (``initial_norms`` the norms
    of ``I^0`` and ``Lambda^0``). The last image is the unfolding's output; ``refined`` is the
    network output after the full-resolution refinement ([ours]), or ``None`` without one, so a
    refinement's gain is never credited to the last stage.
    """

    initial_image: torch.Tensor | None = None
    initial_norms: tuple[torch.Tensor, torch.Tensor] | None = None
    images: list[torch.Tensor] = field(default_factory=list)
    p_h: list[torch.Tensor] = field(default_factory=list)
    p_w: list[torch.Tensor] = field(default_factory=list)
    multipliers: list[torch.Tensor] = field(default_factory=list)
    image_norms: list[torch.Tensor] = field(default_factory=list)
    multiplier_norms: list[torch.Tensor] = field(default_factory=list)
    refined: torch.Tensor | None = None
    initial_factors: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def output(self) -> torch.Tensor:
        """The network's output: the refined image when there is a refinement, else the last stage's."""
        return self.images[-1] if self.refined is None else self.refined

    def record(self, image_space: torch.Tensor, image, multiplier, p_h, p_w) -> None:
        """Append one stage's estimate (image space), features, factors and norms."""
        self.images.append(image_space)
        self.multipliers.append(multiplier)
        self.p_h.append(p_h)
        self.p_w.append(p_w)
        self.image_norms.append(image.detach().flatten(1).norm(dim=1))
        self.multiplier_norms.append(multiplier.detach().flatten(1).norm(dim=1))


class GlobalStatistics(nn.Module):
    """[ours] Whole-image brightest and darkest block averages, projected to ``width`` channels.

    Args:
        width: output channels C.
        block: side of the averaged blocks (the network's down-sampling factor ``s``, so any
            padded input divides evenly); averaging first keeps single noisy or rain pixels from
            being the extremes.

    Input ``(B, 3, H, W)`` with ``H, W`` multiples of ``block``; output ``(B, C, 1, 1)``, zero
    until trained (the projection starts at zero).
    """

    def __init__(self, width: int, block: int) -> None:
        super().__init__()
        self.block = block
        self.proj = nn.Conv2d(6, width, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = nn.functional.avg_pool2d(x, self.block)
        extremes = torch.cat([blocks.amax(dim=(2, 3), keepdim=True), blocks.amin(dim=(2, 3), keepdim=True)], dim=1)
        return self.proj(extremes)


def learned_down(config: InterIRConfig) -> nn.Sequential:
    """[ours] ``(B, 3, H, W) -> (B, C, H/s, W/s)``: 3x3 conv to ``down_up_width`` channels, one
    full-resolution EPBlock, PixelUnshuffle(s), 1x1 conv to ``C``."""
    w, s = config.down_up_width, config.downsample
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), config.epblock(w, full_resolution=True),
        nn.PixelUnshuffle(s), nn.Conv2d(w * s * s, config.width, 1, bias=False),
    )


def learned_up(config: InterIRConfig) -> nn.Sequential:
    """[ours] ``(B, C, H/s, W/s) -> (B, 3, H, W)``: 1x1 conv to ``down_up_width * s^2``,
    PixelShuffle(s), one full-resolution EPBlock, 3x3 conv to 3 channels."""
    w, s = config.down_up_width, config.downsample
    return nn.Sequential(
        nn.Conv2d(config.width, w * s * s, 1), nn.PixelShuffle(s),
        config.epblock(w, full_resolution=True), nn.Conv2d(w, 3, 3, padding=1),
    )


class FullResolutionRefinement(nn.Module):
    """[ours] ``(B, 3, H, W) -> (B, 3, H, W)`` correction at full resolution: 3x3 conv to
    ``refine_width`` channels, ``refine_blocks`` EPBlocks (same conv switch as the network), 3x3 conv
    back to 3 channels. The last conv starts at zero, so a fresh refinement adds nothing."""

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        w = config.refine_width
        self.intro = nn.Conv2d(3, w, 3, padding=1)
        self.blocks = nn.Sequential(*(
            config.epblock(w, full_resolution=True) for _ in range(config.refine_blocks)
        ))
        self.outro = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.zeros_(self.outro.weight)
        nn.init.zeros_(self.outro.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outro(self.blocks(self.intro(x)))


class InterIR(nn.Module):
    """The full network: pad, Down, Init, N-1 IPBlocks, final RESM, Up, global residual, crop.

    Input ``(B, 3, H, W)`` float in [0, 1], any ``H, W >= downsample``; output the same shape
    (not clamped, so the loss sees the raw prediction; clamp for display and saving).
    """

    def __init__(self, config: InterIRConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.width, config.downsample
        learned = config.down_up == "learned"
        # Registration order (down, init, stages, final_resm, up) fixes the optimizer state's
        # parameter order: keep it, or runs saved earlier cannot resume.
        self.down = learned_down(config) if learned else nn.Sequential(
            nn.PixelUnshuffle(s), nn.Conv2d(3 * s * s, c, 3, padding=1, bias=False)
        )
        self.init = LowRankInit(config) if config.operator == "lowrank" else InitModule(
            c, centred=config.factor_init == "centred"
        )
        self.stages = nn.ModuleList(IPBlock(config) for _ in range(config.stages - 1))
        self.final_resm = RESM(config)
        self.up = learned_up(config) if learned else nn.Sequential(
            nn.Conv2d(c, 3 * s * s, 1, bias=False), nn.PixelShuffle(s), nn.Conv2d(3, 3, 3, padding=1, bias=False)
        )
        self.refine = FullResolutionRefinement(config) if config.refine_blocks > 0 else None
        self.global_stats = GlobalStatistics(c, s) if config.airlight_stats else None
        # A training setting, not architecture: the trainer sets it (train.checkpoint_stages,
        # see set_stage_checkpointing); stored configs of older checkpoints may still name it.
        self.checkpoint_stages = False

    @property
    def min_size(self) -> int:
        """Smallest height and width the network accepts (reflect padding needs pad < size)."""
        return self.config.size_multiple

    def set_pool_window(self, window: int) -> int:
        """Set ``config.pool_window`` on a built network and return the previous value.

        The window has no parameters, so this changes how a trained network runs, not its weights
        (:func:`interir.inference.restore_tensor` uses it for its ``pool_window`` option). Every
        EPBlock gets the window it would have been built with (:meth:`InterIRConfig.block_window`:
        full resolution in the learned Down/Up and the refinement, ``1/s`` elsewhere).
        """
        config = replace(self.config, pool_window=int(window))  # validates window >= 0
        full = [part for part in (self.down, self.up, self.refine) if part is not None]
        full_ids = {id(m) for part in full for m in part.modules()}
        for module in self.modules():
            if isinstance(module, WindowedMeanPool):
                module.window = config.block_window(id(module) in full_ids)
        previous, self.config = self.config.pool_window, config
        return previous

    def _run_stage(self, stage: IPBlock, *state):
        if self.checkpoint_stages and self.training and torch.is_grad_enabled():
            return checkpoint(stage, *state, use_reentrant=False)
        return stage(*state)

    def _to_image(self, features: torch.Tensor, initial: torch.Tensor, padded: torch.Tensor, size,
                  initial_up: torch.Tensor | None = None, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Image-space estimate of features ``I^k``: ``Up(I^k) + D``, or with
        ``output_skip="init"`` ``Up(I^k - I^0) + D`` (linear Up) / ``Up(I^k) - Up(I^0) + D``
        (learned Up; ``initial_up`` is ``Up(I^0)``, computed once)."""
        if self.config.output_skip != "init":
            return crop_to(self._up(features, skip) + padded, size)
        if self.config.down_up == "learned":
            return crop_to(self._up(features, skip) - initial_up + padded, size)
        return crop_to(self.up(features - initial) + padded, size)

    def _dense_factors(self, p_h: torch.Tensor, p_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Square ``(P_h, P_w)`` of the stage state's factors, for traces."""
        return make_operator(self.config, p_h, p_w).dense()

    def _down(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(D_down, full-resolution features or None)``: with ``detail_skip`` the learned Down's
        features before its squeeze are kept for Up."""
        if not self.config.detail_skip:
            return self.down(padded), None
        features = self.down[1](self.down[0](padded))
        return self.down[3](self.down[2](features)), features

    def _up(self, features: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        """Up, with Down's full-resolution features added before Up's EPBlock (``detail_skip``)."""
        if skip is None:
            return self.up(features)
        return self.up[3](self.up[2](self.up[1](self.up[0](features)) + skip))

    def _unfold(self, x: torch.Tensor, trace: UnfoldingTrace | None) -> torch.Tensor:
        check_image_batch(x, self.min_size)
        padded, size = pad_to_multiple(x, self.config.size_multiple)
        degraded, skip = self._down(padded)
        if self.global_stats is not None:
            degraded = degraded + self.global_stats(padded)
        image, multiplier, p_h, p_w = self.init(degraded)
        initial = image
        learned_init = self.config.down_up == "learned" and self.config.output_skip == "init"
        initial_up = self._up(initial, skip) if learned_init else None
        to_image = lambda features: self._to_image(features, initial, padded, size, initial_up, skip)  # noqa: E731
        if trace is not None:
            trace.initial_factors = self._dense_factors(p_h, p_w)
            trace.initial_image = to_image(initial)
            trace.initial_norms = (initial.detach().flatten(1).norm(dim=1), multiplier.detach().flatten(1).norm(dim=1))
        for stage in self.stages:
            image, multiplier, p_h, p_w = self._run_stage(stage, image, multiplier, degraded, p_h, p_w)
            if trace is not None:
                trace.record(to_image(image), image, multiplier, *self._dense_factors(p_h, p_w))
        image = self.final_resm(image, multiplier, degraded, make_operator(self.config, p_h, p_w))
        output = to_image(image)
        if trace is not None:
            trace.record(output, image, multiplier, *self._dense_factors(p_h, p_w))
        if self.refine is not None:
            output = output + self.refine(output)
            if trace is not None:
                trace.refined = output
        return output

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        """Restore ``x``.

        Args:
            x: ``(B, 3, H, W)`` float, values in [0, 1].
            return_stages: also return the list of per-stage image estimates (``stages``
                entries of shape ``(B, 3, H, W)``, one per stage; the last is the unfolding's
                output, which equals the network output unless a refinement follows).

        Returns:
            ``(B, 3, H, W)`` restored batch, or ``(output, stage_images)``.
        """
        if return_stages:
            trace = self.trace(x)
            return trace.output, trace.images
        return self._unfold(x, None)

    def trace(self, x: torch.Tensor) -> UnfoldingTrace:
        """Run a forward pass and return every stage's image, factors and multiplier."""
        trace = UnfoldingTrace()
        self._unfold(x, trace)
        return trace


def set_stage_checkpointing(model: nn.Module, enabled: bool = True) -> bool:
    """Switch gradient checkpointing of the unfolded stages on or off in every :class:`InterIR`
    inside ``model`` (a wrapper such as DDP included).

    With it on, a training forward keeps only each stage's inputs and recomputes the stage in the
    backward pass: less memory, the same outputs and gradients, slower steps. It is a training
    setting (``train.checkpoint_stages``), not part of the architecture, so it is not stored in
    checkpoints; evaluation and ``torch.no_grad()`` forwards ignore it.

    Returns:
        Whether ``model`` holds stages to checkpoint (``False`` for e.g. NAFNet).
    """
    found = False
    for module in model.modules():
        if isinstance(module, InterIR):
            module.checkpoint_stages = bool(enabled)
            found = True
    return found
