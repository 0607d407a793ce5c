"""Training loss of the paper (Eq. 2): L1 in the image domain plus L1 in the frequency domain.

``loss = mean|pred - target| + fft_weight * mean|FFT(pred) - FFT(target)|``, where the second
mean runs over the real and imaginary parts of ``torch.fft.fft2`` of every channel (the form
MIMO-UNet introduced and NAFNet/DeepSN-Net-style restorers reuse). The FFT is unnormalised by
default (``norm="backward"``), so the frequency term grows with the patch area; with 0.1 it is of
the same order as the pixel term for 64-256 px patches.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RestorationLoss", "fft_l1"]


def fft_l1(pred: torch.Tensor, target: torch.Tensor, norm: str = "backward") -> torch.Tensor:
    """Mean absolute difference of the 2-D FFTs (real and imaginary parts).

    Args:
        pred, target: ``(B, C, H, W)`` float tensors of the same shape.
        norm: ``torch.fft.fft2`` normalisation: ``"backward"`` (none), ``"ortho"`` or ``"forward"``.

    Returns:
        Scalar tensor. Computed in float32 even under autocast (half-precision FFTs need
        power-of-two sizes and lose accuracy).
    """
    fp = torch.fft.fft2(pred.float(), norm=norm)
    ft = torch.fft.fft2(target.float(), norm=norm)
    return (torch.view_as_real(fp) - torch.view_as_real(ft)).abs().mean()


class RestorationLoss(nn.Module):
    """``L1(pred, target) + fft_weight * L1(FFT(pred), FFT(target))``.

    Args:
        fft_weight: weight of the frequency term (paper: 0.1); 0 gives plain L1.
        norm: FFT normalisation (see :func:`fft_l1`).

    Call with ``pred, target`` of shape ``(B, 3, H, W)`` (values nominally in [0, 1]) to get the
    scalar loss; ``return_parts=True`` also returns ``{"l1": ..., "fft": ...}`` (detached).
    """

    def __init__(self, fft_weight: float = 0.1, norm: str = "backward") -> None:
        super().__init__()
        if fft_weight < 0:
            raise ValueError(f"fft_weight must be >= 0, got {fft_weight}")
        if norm not in ("backward", "ortho", "forward"):
            raise ValueError(f"norm must be 'backward', 'ortho' or 'forward', got {norm!r}")
        self.fft_weight = float(fft_weight)
        self.norm = norm

    def extra_repr(self) -> str:
        return f"fft_weight={self.fft_weight}, norm={self.norm!r}"

    def forward(self, pred: torch.Tensor, target: torch.Tensor, return_parts: bool = False):
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
            )
        l1 = (pred.float() - target.float()).abs().mean()
        if self.fft_weight > 0:
            freq = fft_l1(pred, target, self.norm)
            total = l1 + self.fft_weight * freq
        else:
            freq = torch.zeros((), device=pred.device)
            total = l1
        if return_parts:
            return total, {"l1": l1.detach(), "fft": freq.detach()}
        return total
