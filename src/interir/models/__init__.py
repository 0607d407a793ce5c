"""Networks: InterIR (unfolding), its building blocks, the explainable convolution, baselines.

Importing this package registers the named variants (:mod:`interir.models.factory`) with
:mod:`interir.registry`; ``import interir`` does it, so the registry is full before any use.
"""

from interir.models import factory  # noqa: F401 - registers the named variants
from interir.models.epblock import EPBlock
from interir.models.explainable_conv import (
    ExplainableConv2d,
    convert_to_explainable,
    explainable_convs,
    explanations_disabled,
)
from interir.models.kronecker import KroneckerOperator, frobenius_normalize
from interir.models.unfolding import DMUM, MUM, RESM, InterIR, InterIRConfig, IPBlock, UnfoldingTrace

__all__ = [
    "EPBlock", "ExplainableConv2d", "convert_to_explainable", "explainable_convs", "explanations_disabled", "KroneckerOperator",
    "frobenius_normalize", "InterIR", "InterIRConfig", "IPBlock", "RESM", "DMUM", "MUM", "UnfoldingTrace",
]
