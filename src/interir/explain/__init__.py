"""Interpretability: what each unfolding stage and each explainable convolution does.

Python API (matplotlib and scikit-learn, the ``viz`` extra, are imported only by the functions
that draw or analyse):

- :func:`explain_image` -> :class:`Explanation`: per-stage image estimates, PSNR, degradation
  factors ``P_h``/``P_w``, multiplier energy, and the masks/attention/kernel change of chosen
  explainable convolutions (:class:`ConvExplanation`);
- :func:`write_report`: PNG figures and an ``index.html`` with captions;
- :func:`load_suite`, :func:`degradation_embedding`, :func:`embed_suite`,
  :func:`analyse_embedding`, :func:`write_embedding_report`: the paper's Figure 6 (t-SNE of
  degradation embeddings, coloured by degradation combination, with separation scores).

See ``docs/explain.md``.
"""

from interir.explain._plotting import VIZ_HINT, MissingExtraError
from interir.explain.convs import ConvExplanation, conv_role, default_conv_names, upsample_mask
from interir.explain.embedding import (
    EmbeddingConfig,
    EmbeddingResult,
    SuiteItem,
    analyse_embedding,
    centre_crop,
    degradation_embedding,
    embed_suite,
    load_suite,
    write_embedding_report,
)
from interir.explain.report import write_report
from interir.explain.trajectory import Explanation, explain_image

__all__ = [
    "VIZ_HINT",
    "MissingExtraError",
    "ConvExplanation",
    "conv_role",
    "default_conv_names",
    "upsample_mask",
    "Explanation",
    "explain_image",
    "write_report",
    "EmbeddingConfig",
    "EmbeddingResult",
    "SuiteItem",
    "load_suite",
    "degradation_embedding",
    "embed_suite",
    "analyse_embedding",
    "write_embedding_report",
    "centre_crop",
]
