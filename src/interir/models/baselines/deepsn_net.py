"""DeepSN-Net baseline (Deep Semi-smooth Newton network), light model: the method InterIR extends.

Written from the DeepSN-Net paper's description and its published light configuration
(``pandazcx/DeepSN-Net``, ``DeepSN_Net_s``): the degradation operators are the identity
(P = Q = I), so an image step is a semi-smooth Newton step on ``||I - D||`` plus a learned prior,
at 1/4 resolution after a lossless PixelUnshuffle (C = 3 s^2 = 48).

Its basic block differs from InterIR's EPBlock (which is NAFNet's block, the one ``deepsn-small``
uses): a spatial branch (channel attention, dense 3x3 conv ``C -> rC``, ReLU, dense 3x3 conv
``rC -> C``) plus a frequency branch (BatchNorm, 2-D real FFT, a complex channel MLP with ReLU on
the real and imaginary parts, inverse FFT), the latter bounded by the spatial branch's per-pixel
channel maximum (at least 1) through ``m * tanh(y / m)``, and the input added back.

One stage (light model, ``repeat = 1``):

    A, S   = derivative heads of (block(I) + Lambda)          auxiliary variable and dS
    F      = block2(block1(I) + Lambda + A) + I - D           the residual, P = I
    V      = F + block4(block3(F) * (1 - S))                  J^T F
    I     <- I - eta V                                        eta starts at 0.01
    Lambda <- Lambda + block(I) - A'                          multiplier step (A' from its own heads)

Output ``Up(I^N) + D_full`` with Up = PixelShuffle + 3x3 conv. [ours]: the published code applies
the next-to-last stage's module twice at the end (the last one is never used); here each of the
``stages`` image steps has its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interir.models.layers import check_image_batch, crop_to, pad_to_multiple


@dataclass(frozen=True)
class DeepSNNetConfig:
    """Attributes: ``downsample`` s (working channels ``3 s^2``, lossless), ``stages`` image steps
    (``stages - 1`` multiplier steps), ``spatial_expansion`` r of the 3x3 convs, ``frequency_expansion``
    of the complex channel MLP, ``derivative_expansion`` of the 1x1 derivative heads,
    ``attention_reduction`` of the channel attention, ``step_init`` the initial eta."""

    downsample: int = 4
    stages: int = 6
    spatial_expansion: int = 1
    frequency_expansion: int = 1
    derivative_expansion: int = 4
    attention_reduction: int = 3
    step_init: float = 0.01

    def __post_init__(self) -> None:
        for name in ("downsample", "stages", "spatial_expansion", "frequency_expansion", "derivative_expansion",
                     "attention_reduction"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.stages < 2:
            raise ValueError(f"stages must be at least 2 (one multiplier step between image steps), got {self.stages}")

    @property
    def width(self) -> int:
        return 3 * self.downsample**2


class ChannelAttention(nn.Module):
    """``x * sigmoid(MLP(avgpool(x)))`` with a ``C / reduction`` hidden layer."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x)


class FrequencyMLP(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``: BatchNorm, rFFT over (H, W), complex ``C -> eC -> C``
    channel MLP with ReLU on real and imaginary parts separately, inverse rFFT."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.w_in = nn.Parameter(torch.empty(2, channels, channels * expansion))
        self.w_out = nn.Parameter(torch.empty(2, channels * expansion, channels))
        nn.init.kaiming_uniform_(self.w_in)
        nn.init.kaiming_uniform_(self.w_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfft2(self.norm(x).float()).permute(0, 2, 3, 1)  # (B, H, W/2+1, C)
        hidden = spectrum @ torch.complex(self.w_in[0], self.w_in[1])
        hidden = torch.complex(F.relu(hidden.real), F.relu(hidden.imag))
        spectrum = (hidden @ torch.complex(self.w_out[0], self.w_out[1])).permute(0, 3, 1, 2)
        return torch.fft.irfft2(spectrum, s=(height, width)).to(x.dtype)


class BasicBlock(nn.Module):
    """DeepSN-Net's basic block, ``(B, C, H, W) -> (B, C, H, W)`` (see the module docstring)."""

    def __init__(self, channels: int, config: DeepSNNetConfig) -> None:
        super().__init__()
        hidden = channels * config.spatial_expansion
        self.spatial = nn.Sequential(
            ChannelAttention(channels, config.attention_reduction),
            nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1, bias=False),
        )
        self.frequency = FrequencyMLP(channels, config.frequency_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.spatial(x)
        bound = spatial.amax(dim=1, keepdim=True).clamp_min(1.0)
        return spatial + bound * torch.tanh(self.frequency(x) / bound) + x


class DerivativeHead(nn.Module):
    """1x1 conv ``C -> eC``, ReLU, 1x1 conv ``eC -> C``."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * expansion, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels * expansion, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AuxiliaryVariable(nn.Module):
    """``(I, Lambda) -> (A, S)``: ``u = block(I) + Lambda``, ``A = head1(u)``, ``S = head2(u)``.

    The multiplier step needs only ``A``; built with ``with_derivative=False`` it has no ``S`` head
    (an unused head would hold weights that never get a gradient) and returns ``(A, None)``.
    """

    def __init__(self, channels: int, config: DeepSNNetConfig, with_derivative: bool = True) -> None:
        super().__init__()
        self.block = BasicBlock(channels, config)
        self.split_head = DerivativeHead(channels, config.derivative_expansion)
        self.derivative_head = DerivativeHead(channels, config.derivative_expansion) if with_derivative else None

    def forward(self, image: torch.Tensor, multiplier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        u = self.block(image) + multiplier
        derivative = self.derivative_head(u) if self.derivative_head is not None else None
        return self.split_head(u), derivative


class ImageStep(nn.Module):
    """One semi-smooth Newton image step with P = I (module docstring)."""

    def __init__(self, channels: int, config: DeepSNNetConfig) -> None:
        super().__init__()
        self.auxiliary = AuxiliaryVariable(channels, config)
        self.prior1, self.prior2 = BasicBlock(channels, config), BasicBlock(channels, config)
        self.jacobian1, self.jacobian2 = BasicBlock(channels, config), BasicBlock(channels, config)
        self.step_size = nn.Parameter(torch.tensor(float(config.step_init)))

    def forward(self, image: torch.Tensor, degraded: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        split, derivative = self.auxiliary(image, multiplier)
        residual = self.prior2(self.prior1(image) + multiplier + split) + image - degraded
        direction = residual + self.jacobian2(self.jacobian1(residual) * (1 - derivative))
        return image - self.step_size * direction


class MultiplierStep(nn.Module):
    """``Lambda <- Lambda + block(I) - A(I, Lambda)``."""

    def __init__(self, channels: int, config: DeepSNNetConfig) -> None:
        super().__init__()
        self.auxiliary = AuxiliaryVariable(channels, config, with_derivative=False)
        self.block = BasicBlock(channels, config)

    def forward(self, image: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        split, _ = self.auxiliary(image, multiplier)
        return multiplier + self.block(image) - split


class DeepSNNet(nn.Module):
    """DeepSN-Net (light). Input ``(B, 3, H, W)`` in [0, 1], any ``H, W >= 1`` (padded to a multiple
    of ``downsample``); same-shape output."""

    def __init__(self, config: DeepSNNetConfig) -> None:
        super().__init__()
        self.config = config
        c, s = config.width, config.downsample
        self.down = nn.Sequential(nn.PixelUnshuffle(s), nn.Conv2d(c, c, 3, padding=1, bias=False))
        self.up = nn.Sequential(nn.PixelShuffle(s), nn.Conv2d(3, 3, 3, padding=1, bias=False))
        self.multiplier_init = nn.Conv2d(c, c, 1, bias=False)
        self.image_steps = nn.ModuleList(ImageStep(c, config) for _ in range(config.stages))
        self.multiplier_steps = nn.ModuleList(MultiplierStep(c, config) for _ in range(config.stages - 1))

    @property
    def min_size(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.min_size)
        padded, size = pad_to_multiple(x, self.config.downsample)
        degraded = self.down(padded)
        image, multiplier = degraded, self.multiplier_init(degraded) + degraded
        for index, step in enumerate(self.image_steps):
            image = step(image, degraded, multiplier)
            if index < len(self.multiplier_steps):
                multiplier = self.multiplier_steps[index](image, multiplier)
        return crop_to(self.up(image) + padded, size)
