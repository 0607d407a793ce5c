"""NAFNet baseline (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022).

Written from the paper's description: a U-Net of NAFBlocks (our :class:`EPBlock` with standard
convolutions), stride-2 convs to go down, 1x1 conv + PixelShuffle to go up, additive skips, and a
global residual. Used in the equal-budget comparison as a plain convolutional restorer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interir.models.epblock import EPBlock
from interir.models.layers import check_image_batch, crop_to, pad_to_multiple


@dataclass(frozen=True)
class NAFNetConfig:
    """Attributes: ``width`` of the first level; blocks per encoder level, in the middle and per
    decoder level (the number of levels is ``len(encoder_blocks)``, each halving the resolution)."""

    width: int = 32
    encoder_blocks: tuple[int, ...] = (1, 1, 1, 28)
    middle_blocks: int = 1
    decoder_blocks: tuple[int, ...] = (1, 1, 1, 1)
    explainable: bool = False

    def __post_init__(self) -> None:
        if len(self.encoder_blocks) != len(self.decoder_blocks):
            raise ValueError("encoder_blocks and decoder_blocks must have the same length")
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")


class NAFNet(nn.Module):
    """U-Net of NAFBlocks. Input ``(B, 3, H, W)`` in [0, 1], any ``H, W >= 1``; same-shape output."""

    def __init__(self, config: NAFNetConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = width
        for count in config.encoder_blocks:
            self.encoders.append(nn.Sequential(*[EPBlock(channels, config.explainable) for _ in range(count)]))
            self.downs.append(nn.Conv2d(channels, 2 * channels, 2, stride=2))
            channels *= 2
        self.middle = nn.Sequential(*[EPBlock(channels, config.explainable) for _ in range(config.middle_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for count in config.decoder_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.decoders.append(nn.Sequential(*[EPBlock(channels, config.explainable) for _ in range(count)]))
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.multiple = 2 ** len(config.encoder_blocks)

    @property
    def min_size(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.min_size)
        padded, size = pad_to_multiple(x, self.multiple)
        features = self.intro(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            features = encoder(features)
            skips.append(features)
            features = down(features)
        features = self.middle(features)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            features = decoder(up(features) + skip)
        return crop_to(self.ending(features) + padded, size)

