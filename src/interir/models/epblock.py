"""EPBlock: a NAFBlock whose 3x3 depthwise convolution is (optionally) explainable.

NAFBlock of width c (Chen et al., "Simple Baselines for Image Restoration", 2022):

    x1  = x  + beta  * conv1x1( SCA( SG( dw3x3( conv1x1_{c->2c}( LN(x) )))))
    out = x1 + gamma * conv1x1( SG( conv1x1_{c->2c}( LN(x1) )))

SG splits channels in half and multiplies the halves; SCA(u) = u * conv1x1(GAP(u)). With
``pool_window > 0`` GAP becomes a windowed mean (:class:`WindowedMeanPool`, NAFNet's TLC).
``beta`` and ``gamma`` start at zero, so a fresh block is the identity and deep unrolled networks
start from the plain optimisation iteration.
"""

from __future__ import annotations

import torch
from torch import nn

from interir.models.explainable_conv import ExplainableConv2d
from interir.models.layers import LayerNorm2d, SimpleGate, WindowedMeanPool


class EPBlock(nn.Module):
    """Residual block mapping ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: width ``C``.
        explainable: use :class:`ExplainableConv2d` for the depthwise 3x3 conv (InterIR's EPBlock)
            instead of ``nn.Conv2d`` (plain NAFBlock, the ablation baseline).
        dw_expansion: channel expansion before the depthwise conv.
        ffn_expansion: channel expansion in the feed-forward half.
        pool_window: side, in pixels of this block's input, of the channel attention's pooling
            window; 0 (default) pools the whole map.
        learn_attention_gain: [ours] the explainable conv learns its softmax's inverse
            temperature (see :class:`ExplainableConv2d`); ignored for ``explainable=False``.
    """

    def __init__(
        self,
        channels: int,
        explainable: bool = True,
        dw_expansion: int = 2,
        ffn_expansion: int = 2,
        pool_window: int = 0,
        learn_attention_gain: bool = False,
    ) -> None:
        super().__init__()
        dw_channels = channels * dw_expansion
        ffn_channels = channels * ffn_expansion
        self.norm1 = LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, dw_channels, 1)
        if explainable:
            self.depthwise = ExplainableConv2d(
                dw_channels, dw_channels, 3, padding=1, groups=dw_channels, learn_attention_gain=learn_attention_gain
            )
        else:
            self.depthwise = nn.Conv2d(dw_channels, dw_channels, 3, padding=1, groups=dw_channels)
        self.gate = SimpleGate()
        self.channel_attention = nn.Sequential(
            WindowedMeanPool(pool_window), nn.Conv2d(dw_channels // 2, dw_channels // 2, 1)
        )
        self.project = nn.Conv2d(dw_channels // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.ffn_expand = nn.Conv2d(channels, ffn_channels, 1)
        self.ffn_project = nn.Conv2d(ffn_channels // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.gate(self.depthwise(self.expand(self.norm1(x))))
        u = u * self.channel_attention(u)
        # [ours] x + beta * y in one pass (addcmul) instead of a product and a sum: 2x faster on
        # one CPU thread, the same values to float rounding (benchmarks/results/cpu_paths.md).
        x = torch.addcmul(x, self.beta, self.project(u))
        v = self.gate(self.ffn_expand(self.norm2(x)))
        return torch.addcmul(x, self.gamma, self.ffn_project(v))
