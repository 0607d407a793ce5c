"""Physics checks of an unfolding network: is ``P`` still a degradation operator, and does the data
term keep the sign of ``P^T (P I - D)``? (issue 25; docs/architecture.md section 7 says what training
did to core v2).

- :func:`factor_spectrum`: singular values of the factors ``P_h``/``P_w`` of one stage, summarised as
  numerical rank, effective rank, top-value energy share, conditioning and how close the top
  singular vector is to the constant vector (a factor near ``1 1^T`` makes ``P^T P X`` a global
  pooling, not a degradation operator).
- :func:`data_term_weights`: the weights each RESM put on its data term for one image: the single
  non-negative weight of ``data_term="residual"``, or ``w1, w2`` of the free form, whose physics
  needs opposite signs.
- :func:`physics_report`: both, per stage, for one image; :meth:`PhysicsReport.lines` prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from interir.models.unfolding import RESM, InterIR

# Singular values below this fraction of the largest count as zero (float32 round-off of a
# rank-r product is ~1e-7 relative).
RANK_TOLERANCE = 1e-5


@dataclass
class FactorSpectrum:
    """Singular-value summary of ``C`` square factors ``(C, n, n)``, averaged over channels.

    Attributes:
        size: ``n``.
        numerical_rank: singular values above ``RANK_TOLERANCE * sigma_max`` (mean over channels).
        effective_rank: ``exp`` of the entropy of the normalised ``sigma^2`` (1 for rank 1, ``n``
            for an orthogonal factor).
        top_energy: ``sigma_1^2 / sum sigma^2`` (mean over channels), in (0, 1].
        condition: ``sigma_1 / sigma_r`` over the numerical rank ``r`` (median over channels): how
            ill-conditioned the operator is on the part of the space it does not annihilate.
        constant_cosine: ``|cos|`` between the top left singular vector and the constant vector.
    """

    size: int
    numerical_rank: float
    effective_rank: float
    top_energy: float
    condition: float
    constant_cosine: float


def factor_spectrum(factors: torch.Tensor) -> FactorSpectrum:
    """Summarise square factors ``(C, n, n)`` (or ``(n, n)``), any float dtype."""
    p = factors.detach().double()
    if p.dim() == 2:
        p = p.unsqueeze(0)
    if p.dim() != 3 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"expected square factors (C, n, n), got {tuple(factors.shape)}")
    u, sigma, _ = torch.linalg.svd(p)
    top = sigma[:, :1].clamp_min(1e-300)
    kept = sigma > RANK_TOLERANCE * top
    rank = kept.sum(dim=1).clamp_min(1)
    energy = sigma**2 / (sigma**2).sum(dim=1, keepdim=True).clamp_min(1e-300)
    entropy = -(energy * energy.clamp_min(1e-300).log()).sum(dim=1)
    smallest_kept = sigma.gather(1, (rank - 1).unsqueeze(1))
    condition = (top / smallest_kept.clamp_min(1e-300)).squeeze(1)
    n = p.shape[-1]
    constant = torch.full((n,), 1.0 / math.sqrt(n), dtype=p.dtype)
    cosine = (u[:, :, 0] @ constant).abs()
    return FactorSpectrum(
        size=n,
        numerical_rank=rank.double().mean().item(),
        effective_rank=entropy.exp().mean().item(),
        top_energy=energy[:, 0].mean().item(),
        condition=condition.median().item(),
        constant_cosine=cosine.mean().item(),
    )


@dataclass
class DataTermWeights:
    """The data-term weights one RESM produced for one image (means over channels and pixels).

    ``form`` is ``"residual"`` (``w_d (P^T P I - P^T D)``, ``w_d = softplus(.) >= 0``: ``w1 = w_d``,
    ``w2 = -w_d``), ``"free"`` (``w1 P^T P I + w2 P^T D``) or ``"fixed"`` (DeepSN-Net's
    ``P^T P I - P^T D``: ``w1 = 1``, ``w2 = -1``). ``fraction_opposite`` is the share of the weight
    maps' entries where ``w1`` and ``w2`` have opposite signs, the data term's physics.
    """

    form: str
    w1: float
    w2: float
    prior_weight: float
    fraction_opposite: float

    @property
    def sign_holds(self) -> bool:
        """The data term pulls ``P I`` towards ``D`` everywhere: ``w1 > 0 > w2`` (and not ~0)."""
        return self.fraction_opposite == 1.0 and self.w1 > 0 > self.w2


def _resm_modules(model: nn.Module) -> list[RESM]:
    """The RESM of each stage, in order (IPBlocks, then the final RESM)."""
    if not isinstance(model, InterIR):
        raise TypeError(
            f"{type(model).__name__} is not an InterIR network: the physics checks read its stages' "
            "data terms and factors (any InterIR variant, see `interir models`)"
        )
    return [stage.resm for stage in model.stages] + [model.final_resm]


def _weights_of(resm: RESM, output: tuple[torch.Tensor, ...] | None) -> DataTermWeights:
    if output is None or resm.form != "interir":
        return DataTermWeights("fixed", 1.0, -1.0, 1.0, 1.0)
    if resm.residual_data_term:
        raw, prior = output
        w_d = F.softplus(raw)
        opposite = (w_d > 0).double().mean().item()
        return DataTermWeights("residual", w_d.mean().item(), -w_d.mean().item(), prior.mean().item(), opposite)
    w1, w2, prior = output
    opposite = ((w1 * w2) < 0).double().mean().item()
    return DataTermWeights("free", w1.mean().item(), w2.mean().item(), prior.mean().item(), opposite)


@dataclass
class PhysicsReport:
    """Per-stage physics of one forward pass (stage ``k`` at index ``k - 1``; the last entry is the
    final RESM, which reuses the last factors)."""

    model_name: str
    data_terms: list[DataTermWeights] = field(default_factory=list)
    p_h: list[FactorSpectrum] = field(default_factory=list)
    p_w: list[FactorSpectrum] = field(default_factory=list)

    @property
    def sign_holds(self) -> bool:
        return all(term.sign_holds for term in self.data_terms)

    def lines(self) -> list[str]:
        """Plain-text table for the terminal."""
        out = [f"physics of {self.model_name}: data term (w1 P^T P I + w2 P^T D) and factor spectra"]
        out.append("stage  form      w1      w2     opposite  prior |  P_h rank eff  top%  cond     cos1 |  P_w rank eff  top%  cond     cos1")
        for k, (term, ph, pw) in enumerate(zip(self.data_terms, self.p_h, self.p_w), start=1):
            cells = [f"{k:>5}  {term.form:<8} {term.w1:+.3f}  {term.w2:+.3f}  {term.fraction_opposite:7.0%}  {term.prior_weight:+.2f}"]
            for s in (ph, pw):
                cells.append(f"{s.numerical_rank:5.1f} {s.effective_rank:4.1f} {s.top_energy:5.0%} {s.condition:8.1e} {s.constant_cosine:.2f}")
            out.append(" | ".join(cells))
        verdict = "holds in every stage" if self.sign_holds else "does NOT hold in every stage"
        out.append(f"data-term sign (P I pulled towards D): {verdict}")
        return out


@torch.no_grad()
def physics_report(model: nn.Module, image: torch.Tensor) -> PhysicsReport:
    """Run ``model`` on ``image`` (``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]) and read each stage's
    data-term weights and factor spectra. The model is left as it was (mode and weights)."""
    resms = _resm_modules(model)
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    batch = batch[:1].to(next(model.parameters()).device)
    outputs: list[tuple[torch.Tensor, ...] | None] = [None] * len(resms)
    handles = []
    for index, resm in enumerate(resms):
        weight_net = getattr(resm, "term_weights", None)
        if isinstance(weight_net, nn.Module):
            def keep(_module, _inputs, output, index=index):
                outputs[index] = tuple(output)
            handles.append(weight_net.register_forward_hook(keep))
    was_training = model.training
    try:
        model.eval()
        trace = model.trace(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    report = PhysicsReport(str(getattr(model, "model_name", type(model).__name__)))
    report.data_terms = [_weights_of(resm, output) for resm, output in zip(resms, outputs)]
    report.p_h = [factor_spectrum(p[0]) for p in trace.p_h]
    report.p_w = [factor_spectrum(p[0]) for p in trace.p_w]
    return report
