"""Registered model variants: ``interir.create_model(name, **overrides)``.

Paper size (``interir``, ``deepsn``): width 92, 15 stages, working resolution 1/8, heads x16; see
docs/architecture.md for the measured parameter and multiply-add counts. ``interir-small`` and
``interir-base`` (the shipped default) and ``interir-tiny`` are the same code at CPU-trainable
sizes. Ablations of the paper's Table 4 are the
``conv``/``resm``/``dmum_mum`` overrides of any InterIR variant, e.g.
``create_model("interir-small", conv="standard")``.
"""

from __future__ import annotations

from interir.models.baselines.deepsn_net import DeepSNNet, DeepSNNetConfig
from interir.models.baselines.nafnet import NAFNet, NAFNetConfig
from interir.models.unfolding import InterIR, InterIRConfig
from interir.registry import register_model

# Core v2 (issue 14, benchmarks/results/architecture_probes.md): every stage starts as the identity
# and adds a gated, learned update ([paper] additive form of the supplement; [ours] zero-initialised
# gates), and the output is Up(I^N - I^0) + D ([ours]), so a fresh network returns its input.
# Checkpoints written before v2 keep their v1 forms: stored configs fill these fields with the
# dataclass defaults (interir.registry.stored_config).
V2 = dict(stage_update="add", output_skip="init")
# The paper's size (Table 8: 27 M parameters, 22 G multiply-adds at 256^2) fixes C = 92 at s = 8,
# so this variant cannot be lossless (3 s^2 = 192 > 92): kept as the paper sizes it.
PAPER = InterIRConfig(width=92, stages=15, downsample=8, head_expansion=16, **V2)
# [ours] CPU size, chosen by the probes (benchmarks/results/architecture_probes.md): width 32 at 1/4
# with a learned full-resolution Down/Up (one EPBlock of width 16 each side) scored 19.08 dB after
# 1000 steps (with optim.gain_lr_scale=10), above the lossless width 48 with the pixel Down/Up
# (18.56) at 56 % of its multiply-adds. Up works at full resolution, so C < 3 s^2 no longer
# limits which pixel patterns the residual can reach.
SMALL = InterIRConfig(width=32, stages=5, downsample=4, head_expansion=4, down_up="learned", **V2)
# [ours] The shipped default's size (same lossless width), plus two EPBlocks at full resolution
# (width 16) after the output (benchmarks/results/noise_probe.md); the refinement is reported as
# its own part of the gain by `interir explain`.
BASE = InterIRConfig(width=48, stages=4, downsample=4, head_expansion=2, refine_blocks=2, refine_width=16, **V2)
TINY = InterIRConfig(width=16, stages=3, downsample=4, head_expansion=2, **V2)
DEEPSN_SWITCHES = dict(conv="standard", resm="deepsn", dmum_mum="deepsn")


def _interir(config: InterIRConfig) -> InterIR:
    return InterIR(config)


def _nafnet(config: NAFNetConfig) -> NAFNet:
    return NAFNet(config)


def _deepsn_net(config: DeepSNNetConfig) -> DeepSNNet:
    return DeepSNNet(config)


register_model("interir", PAPER, "InterIR at the paper's size (~27 M parameters)")(_interir)
register_model("interir-small", SMALL, "InterIR core v2 for CPU training (width 32 at 1/4, 5 stages, learned full-resolution Down/Up)")(_interir)
register_model(
    "interir-base", BASE,
    "InterIR core v2: width 48 at 1/4, 4 stages, full-resolution refinement "
    "(the default's size; its shipped weights are core v1)",
)(_interir)
register_model("interir-tiny", TINY, "InterIR for tests and quick experiments (width 16, 3 stages)")(_interir)
register_model(
    "deepsn", InterIRConfig(**{**PAPER.__dict__, **DEEPSN_SWITCHES}),
    "DeepSN-Net-style baseline: all three Table-4 switches off, paper size",
)(_interir)
register_model(
    "deepsn-small", InterIRConfig(**{**SMALL.__dict__, **DEEPSN_SWITCHES}),
    "DeepSN-Net-style baseline at interir-small's size",
)(_interir)
register_model(
    "interir-small-xconv", InterIRConfig(**{**SMALL.__dict__, "resm": "deepsn", "dmum_mum": "deepsn"}),
    "interir-small with only the explainable convolution turned on (Table 4/5 ablation)",
)(_interir)
register_model("nafnet", NAFNetConfig(), "NAFNet baseline, width 32 (paper's NAFNet-width32)")(_nafnet)
register_model(
    "nafnet-small", NAFNetConfig(width=16, encoder_blocks=(1, 1, 2), middle_blocks=2, decoder_blocks=(1, 1, 1)),
    "NAFNet baseline of the equal-budget rematch (width 16, 0.44 M parameters)",
)(_nafnet)
# Table 4's first row (issue 25): DeepSN-Net itself, its light model as published (P = Q = I, C = 48
# at 1/4, 6 stages: 2.53 M parameters, 9.2 GMAC at 256^2), and at about the v3 interir-small's
# multiply-adds (2 stages: 0.76 M, 2.8 GMAC). ``deepsn``/``deepsn-small`` above are InterIR with
# the three Table-4 switches off, NAFNet blocks included: not DeepSN-Net's basic block.
register_model("deepsn-net", DeepSNNetConfig(), "DeepSN-Net light model as published (P = Q = I, 6 stages)")(_deepsn_net)
register_model(
    "deepsn-net-small", DeepSNNetConfig(stages=2),
    "DeepSN-Net light model at about interir-small v3's multiply-adds (2 stages)",
)(_deepsn_net)
# Core v3 (issue 25, benchmarks/results/architecture_probes.md "Core v3"): the options that the
# 1000-step probes kept: Up's full-resolution block sees Down's full-resolution features ([ours],
# +1.02 dB), the data term P^T(P I - D) with one non-negative weight ([paper] physics, +0.15 dB),
# and a rank-1 separable operator predicted from pooled features in place of the Gram factors and
# DMUM's blocks ([ours], -0.10 dB for 39 % fewer multiply-adds). Dropped: the 1/8 prior branch
# (+0.00 dB for +7 % MACs) and the learned attention gain (-0.15 dB).
V3 = dict(detail_skip=True, data_term="residual", operator="lowrank", operator_rank=1)
SMALL_V3 = InterIRConfig(**{**SMALL.__dict__, **V3})
register_model("interir-small-v3", SMALL_V3, "InterIR core v3 at interir-small's size (width 32 at 1/4, 5 stages)")(_interir)
register_model(
    "interir-tiny-v3", InterIRConfig(**{**SMALL_V3.__dict__, "width": 24, "stages": 4}),
    "InterIR core v3, smaller (width 24 at 1/4, 4 stages)",
)(_interir)
register_model(
    "interir-small-v3-xconv", InterIRConfig(**{**SMALL_V3.__dict__, "resm": "deepsn", "dmum_mum": "deepsn"}),
    "interir-small-v3 with only the explainable convolution turned on (Table 4 ablation)",
)(_interir)
_NAFNET_SMALL_BLOCKS = dict(encoder_blocks=(1, 1, 2), middle_blocks=2, decoder_blocks=(1, 1, 1))
for _width in (24, 32):
    register_model(
        f"nafnet-small-w{_width}", NAFNetConfig(width=_width, **_NAFNET_SMALL_BLOCKS),
        f"nafnet-small's blocks at width {_width} (the rematch's cost curve)",
    )(_nafnet)
