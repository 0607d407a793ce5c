"""Comparison networks behind the same interface as InterIR: ``(B, 3, H, W) -> (B, 3, H, W)``."""

from interir.models.baselines.deepsn_net import DeepSNNet, DeepSNNetConfig
from interir.models.baselines.nafnet import NAFNet, NAFNetConfig

__all__ = ["DeepSNNet", "DeepSNNetConfig", "NAFNet", "NAFNetConfig"]
