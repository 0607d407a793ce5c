"""The copy of a model that gets exported (ONNX, TorchScript, the ONNX Runtime backend).

Lives with the models so that both :mod:`interir.export` and :mod:`interir.inference` can use it
without importing each other.
"""

from __future__ import annotations

import copy

from torch import nn

from interir.models.explainable_conv import ExplainableConv2d, is_depthwise

__all__ = ["prepare_for_export"]


def prepare_for_export(model: nn.Module) -> tuple[nn.Module, bool]:
    """A copy of ``model`` to export: on the CPU, in eval mode, frozen, keeping no explanations.

    Returns:
        ``(copy, dynamic_batch)``: ``dynamic_batch`` is True when every explainable conv is
        depthwise with stride 1 (then nothing in the graph depends on the batch size).
    """
    copy_ = copy.deepcopy(model).cpu().eval()
    dynamic_batch = True
    for module in copy_.modules():
        if isinstance(module, ExplainableConv2d):
            module.store_explanation = False
            module.last_mask = None
            module.last_attention = None
            dynamic_batch &= is_depthwise(module)
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_, dynamic_batch
