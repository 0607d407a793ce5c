"""The explainable convolution (design Eqs. 15-20) and a converter for any model's convolutions.

For every sample ``b`` the shared kernel ``W`` is modulated by an attention map derived from where
the input exceeds a learned threshold:

- (15) the standard conv would be ``Y_b = W * X_b``;
- (16) binary mask ``M_b = 1[X_b > tau]`` with a learnable threshold per input channel; the forward
  pass uses the hard mask and the backward pass the gradient of ``sigmoid((X - tau) / T)``
  (straight-through estimator), so ``tau`` and ``X`` both learn;
- (17) ``P_b = adaptive_avg_pool(M_b -> k x k)``: the fraction of active pixels in each of the
  k x k regions of the image, per input channel;
- (18) ``A_b = k^2 * softmax(P_b / T_a)`` over the k*k positions of each channel (the k^2 factor
  makes a uniform mask give A = 1, i.e. the plain convolution); [ours] optionally with a learned
  per-channel gain ``g = exp(log_gain)`` in place of ``1 / T_a`` (``learn_attention_gain``): at
  ``T_a = 1`` a tap can change by at most a factor ``e`` (mask fractions lie in [0, 1]), a learned
  gain lets the modulation grow where training finds it useful;
- (19) ``W_b = W * A_b`` broadcast over output channels; ``W`` itself is never changed;
- (20) all ``W_b`` applied at once as one grouped convolution, so sample b depends only on b.

``M_b`` and ``A_b`` of the last forward pass are kept on the module (``last_mask``,
``last_attention``) as the explanation of what activated the kernel for that image.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from interir.models.layers import (
    adaptive_avg_pool2d_exportable,
    is_batch_one_export,
    is_exporting,
)


class ExplainableConv2d(nn.Conv2d):
    """Drop-in replacement for :class:`torch.nn.Conv2d` with per-sample, mask-attended kernels.

    Takes every ``nn.Conv2d`` constructor argument (stride, padding, dilation, groups, bias,
    padding_mode, ...) and has the same ``weight``/``bias`` parameters, so an ``nn.Conv2d``
    state dict loads into it (the extra ``threshold`` keeps its initial value).

    Args:
        threshold_init: initial value of the per-input-channel threshold ``tau``.
        ste_temperature: temperature ``T`` of the sigmoid whose gradient the mask borrows.
        attention_temperature: temperature ``T_a`` of the softmax over kernel positions.
        store_explanation: keep ``last_mask`` (bool, ``(B, C_in, H, W)``) and ``last_attention``
            (``(B, C_in, kh, kw)``) after each forward pass.
        learn_attention_gain: [ours] learn the softmax's inverse temperature per input channel
            (parameter ``attention_log_gain``, starting at ``log(1 / T_a)``, so a fresh conv
            computes exactly what the fixed temperature does).

    Shapes: input ``(B, C_in, H, W)``, output ``(B, C_out, H_out, W_out)`` exactly as ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        threshold_init: float = 0.0,
        ste_temperature: float = 0.5,
        attention_temperature: float = 1.0,
        store_explanation: bool = True,
        learn_attention_gain: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )
        if ste_temperature <= 0 or attention_temperature <= 0:
            raise ValueError("ste_temperature and attention_temperature must be positive")
        self.threshold = nn.Parameter(
            torch.full((in_channels,), float(threshold_init), device=device, dtype=dtype)
        )
        self.ste_temperature = float(ste_temperature)
        self.attention_temperature = float(attention_temperature)
        self.store_explanation = store_explanation
        # False inside modulation_disabled(): the knock-out of the per-image modulation
        self.modulate = True
        self.attention_log_gain = None
        if learn_attention_gain:
            start = -torch.log(torch.tensor(float(attention_temperature)))
            self.attention_log_gain = nn.Parameter(
                torch.full((in_channels,), float(start), device=device, dtype=dtype)
            )
        self.last_mask: torch.Tensor | None = None
        self.last_attention: torch.Tensor | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> "ExplainableConv2d":
        """Build an explainable conv with the same geometry as ``conv``, sharing a copy of its weights."""
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, **kwargs,
        )
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        new.train(conv.training)
        return new

    # -- Eqs. 16-18 ---------------------------------------------------------------------------
    def binary_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 16: the hard mask (bool) and the mask used downstream (float, values in {0, 1}).

        When gradients are needed the float mask carries the straight-through gradient of
        ``sigmoid((x - tau) / T)``; its forward values are still exactly the hard mask.
        """
        threshold = self.threshold.view(1, -1, 1, 1)
        if not torch.is_grad_enabled() or not (x.requires_grad or self.threshold.requires_grad):
            # x > tau is exactly (x - tau) > 0 in floating point, in one pass over x, not two.
            hard = x > threshold
            return hard, hard.to(x.dtype)
        shifted = x - threshold
        hard = shifted > 0
        soft = torch.sigmoid(shifted / self.ste_temperature)
        return hard, hard.to(x.dtype) + (soft - soft.detach())

    def kernel_attention(self, mask: torch.Tensor) -> torch.Tensor:
        """Eqs. 17-18: pool the mask to the kernel size and turn it into a k^2-scaled softmax.

        Returns ``(B, C_in, kh, kw)``; a spatially uniform mask gives all ones.
        """
        kh, kw = self.kernel_size
        pooled = self._pool(mask)
        batch, channels = pooled.shape[:2]
        logits = pooled.reshape(batch, channels, kh * kw)
        if self.attention_log_gain is None:
            logits = logits / self.attention_temperature
        else:
            logits = logits * self.attention_log_gain.exp().view(1, -1, 1)
        attention = torch.softmax(logits, dim=-1) * (kh * kw)
        return attention.reshape(batch, channels, kh, kw)

    def _pool(self, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 17's pooling to ``k x k``: the cumulative-sum form when exporting (adaptive
        pooling's exported decomposition depends on ``H mod k``), PyTorch's adaptive pooling
        otherwise."""
        if is_exporting():
            return adaptive_avg_pool2d_exportable(mask, *self.kernel_size)
        return F.adaptive_avg_pool2d(mask, self.kernel_size)

    def per_sample_weight(self, attention: torch.Tensor) -> torch.Tensor:
        """Eq. 19: ``(B, C_out, C_in/groups, kh, kw)`` kernels ``W_b = W * A_b``.

        Output channel ``o`` of group ``g`` reads input channels ``g*C_in/groups + j``, so the
        attention of those input channels is broadcast to every output channel of the group.
        """
        batch = attention.shape[0]
        kh, kw = self.kernel_size
        in_per_group = self.in_channels // self.groups
        out_per_group = self.out_channels // self.groups
        grouped = attention.reshape(batch, self.groups, 1, in_per_group, kh, kw)
        grouped = grouped.expand(batch, self.groups, out_per_group, in_per_group, kh, kw)
        grouped = grouped.reshape(batch, self.out_channels, in_per_group, kh, kw)
        return self.weight.unsqueeze(0) * grouped

    # -- Eq. 20 ---------------------------------------------------------------------------------
    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Apply non-zero padding modes by hand, as nn.Conv2d does, and return conv2d's padding."""
        if self.padding_mode != "zeros":
            return F.pad(x, _pad_amounts(self), mode=self.padding_mode), 0
        return x, self.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.modulate:  # knocked out (modulation_disabled): A = 1, the plain convolution
            return super().forward(x)
        return self._convolve(x, self.input_attention(x))

    def input_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Eqs. 16-18 from the input: ``(B, C_in, H, W) -> (B, C_in, kh, kw)`` attention.

        Keeps ``last_mask`` and ``last_attention`` when ``store_explanation``. This is the method
        :mod:`interir.inference.shared_stats` records on a whole image and replays on its tiles,
        so a tile does not compute a mask it would not use.
        """
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.threshold.requires_grad)
        # (Under bf16 autocast x is bfloat16 and the threshold float32: a comparison writing a
        # bfloat16 mask then was 4x slower than the two passes, so it keeps them.)
        if (self.store_explanation or needs_grad or is_exporting()
                or x.dtype != self.threshold.dtype):
            hard_mask, mask = self.binary_mask(x)
            attention = self.kernel_attention(mask)
            if self.store_explanation:
                self.last_mask = hard_mask
                self.last_attention = attention.detach()
            return attention
        # [ours] Inference: the comparison writes the float mask itself, one pass over x instead
        # of a bool mask and its conversion (the same 0/1 values; 2.7x faster mask and pooling
        # with one thread, benchmarks/results/cpu_paths.md).
        mask = torch.gt(x, self.threshold.view(1, -1, 1, 1), out=torch.empty_like(x))
        return self.kernel_attention(mask)

    def _convolve(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Eq. 20: every sample with its own kernels ``W_b`` (Eq. 19).

        When exporting, a depthwise stride-1 conv applies them as shifted multiply-adds, whose
        graph does not depend on the batch size (a grouped conv over the batch has ``groups = B``,
        a constant in ONNX); otherwise, training included, as one grouped convolution (5-12x faster
        forward and backward than the shifted form with torch 2.13 on the CPU,
        benchmarks/results/train_throughput.md). An export in
        :func:`~interir.models.layers.batch_one_export_form` keeps the grouped form too (batch 1:
        one ``Conv`` with a computed weight).
        """
        if is_exporting() and is_depthwise(self) and not is_batch_one_export():
            return self._convolve_shifted(x, attention)
        return self._convolve_grouped(x, attention)

    def _convolve_grouped(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Eq. 20 as one grouped convolution with the batch folded into the channels."""
        if is_depthwise(self):
            # W_b of a depthwise conv is W * A_b itself: no broadcast over output channels needed.
            weights = (self.weight[:, 0].unsqueeze(0) * attention).unsqueeze(2)
        else:
            weights = self.per_sample_weight(attention)
        padded, padding = self._padded(x)
        batch = x.shape[0]
        if batch == 1:
            # One sample needs no batch grouping: a plain (grouped) conv with its own kernel.
            return F.conv2d(padded, weights[0], self.bias, self.stride, padding, self.dilation, self.groups)
        # Fold the batch into the channel axis and give each sample its own group of kernels.
        folded = padded.reshape(1, batch * self.in_channels, *padded.shape[-2:])
        folded_weight = weights.reshape(batch * self.out_channels, *weights.shape[2:])
        folded_bias = self.bias.repeat(batch) if self.bias is not None else None
        out = F.conv2d(
            folded, folded_weight, folded_bias, self.stride, padding, self.dilation, self.groups * batch
        )
        return out.reshape(batch, self.out_channels, *out.shape[-2:])

    def _convolve_shifted(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Eq. 20 for a depthwise stride-1 conv: the sum over kernel taps ``(i, j)`` of the input
        shifted by the tap, scaled per sample and channel by ``W_b[i, j]``."""
        kh, kw = self.kernel_size
        kernel = self.weight[:, 0].unsqueeze(0) * attention  # (B, C, kh, kw): W_b for depthwise
        padded, padding = self._padded(x)
        if padding != 0:
            pad_h, pad_w = padding
            padded = F.pad(padded, (pad_w, pad_w, pad_h, pad_h))
        dh, dw = self.dilation
        out_h = padded.shape[-2] - dh * (kh - 1)
        out_w = padded.shape[-1] - dw * (kw - 1)
        out = None
        for i in range(kh):
            for j in range(kw):
                shifted = padded[:, :, i * dh : i * dh + out_h, j * dw : j * dw + out_w]
                term = kernel[:, :, i : i + 1, j : j + 1] * shifted
                out = term if out is None else out + term
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", ste_temperature={self.ste_temperature}, attention_temperature={self.attention_temperature}"
        )


def is_depthwise(conv: nn.Conv2d) -> bool:
    """One kernel per channel, stride 1, numeric padding: the form Eq. 20 can apply by shifts."""
    return (
        conv.groups == conv.in_channels == conv.out_channels
        and tuple(conv.stride) == (1, 1)
        and not isinstance(conv.padding, str)
    )


def _pad_amounts(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom) of ``conv``'s padding, for non-zero modes."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    amounts: list[int] = []
    for axis in (1, 0):  # F.pad lists the last axis first
        if conv.padding == "same":
            total = conv.dilation[axis] * (conv.kernel_size[axis] - 1)
            amounts += [total // 2, total - total // 2]
        else:
            amounts += [conv.padding[axis]] * 2
    return tuple(amounts)


def _default_predicate(name: str, conv: nn.Conv2d) -> bool:
    # A 1x1 kernel has a single position, so the attention would always be 1: nothing to explain.
    return conv.kernel_size != (1, 1)


def convert_to_explainable(
    module: nn.Module,
    predicate: Callable[[str, nn.Conv2d], bool] | None = None,
    **kwargs,
) -> nn.Module:
    """Replace the ``nn.Conv2d`` layers of ``module`` (in place) by :class:`ExplainableConv2d`.

    The paper does this to FDTANet and DeepSN-Net (its Table 5). Weights are kept, so a trained
    model can be converted and fine-tuned.

    Args:
        module: any model.
        predicate: ``predicate(qualified_name, conv) -> bool`` chooses which convs to convert;
            by default every conv whose kernel is larger than 1x1.
        **kwargs: forwarded to :class:`ExplainableConv2d` (thresholds, temperatures).

    Returns:
        ``module`` itself (or the converted conv when ``module`` is itself a conv).
    """
    choose = predicate or _default_predicate
    if isinstance(module, nn.Conv2d) and not isinstance(module, ExplainableConv2d):
        return ExplainableConv2d.from_conv(module, **kwargs) if choose("", module) else module
    for qualified_name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and not isinstance(child, ExplainableConv2d):
                full_name = f"{qualified_name}.{child_name}" if qualified_name else child_name
                if choose(full_name, child):
                    setattr(parent, child_name, ExplainableConv2d.from_conv(child, **kwargs))
    return module


def explainable_convs(module: nn.Module) -> dict[str, ExplainableConv2d]:
    """All explainable convolutions of ``module`` by qualified name, in registration order."""
    return {name: m for name, m in module.named_modules() if isinstance(m, ExplainableConv2d)}


@contextlib.contextmanager
def modulation_disabled(module: nn.Module) -> Iterator[None]:
    """Within the block, every explainable conv of ``module`` is its plain convolution (``A = 1``):
    the knock-out that measures what the per-image modulation adds to a trained network."""
    convs = [m for m in module.modules() if isinstance(m, ExplainableConv2d)]
    states = [conv.modulate for conv in convs]
    for conv in convs:
        conv.modulate = False
    try:
        yield
    finally:
        for conv, state in zip(convs, states):
            conv.modulate = state


@contextlib.contextmanager
def explanations_disabled(module: nn.Module) -> Iterator[None]:
    """Within the block, explainable convs of ``module`` do not keep their last mask/attention.

    Used for inference, profiling and export, where keeping a mask per layer only costs memory.
    """
    switched = [m for m in module.modules() if isinstance(m, ExplainableConv2d) and m.store_explanation]
    for conv in switched:
        conv.store_explanation = False
    try:
        yield
    finally:
        for conv in switched:
            conv.store_explanation = True
