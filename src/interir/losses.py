"""Training loss of the paper (Eq. 2): L1 in the image domain plus L1 in the frequency domain.

Optionally ([ours], ``pixel="psnr"``) the image-domain term is NAFNet's PSNR loss instead,
``mean_b 10 log10(MSE_b + eps)``: the mean over the batch of each image's negative PSNR. It
optimises what the benchmark tables average (per-image PSNR), so an image that is almost clean,
whose error budget is tiny, weighs as much as a heavily degraded one; with L1 the heavily degraded
images dominate and the network learns to "restore" near-clean images too (it added contrast to
clean CBSD68 images, scoring 24-33 dB on them).

``loss = mean|pred - target| + fft_weight * mean|FFT(pred) - FFT(target)|``, where the second
mean runs over the real and imaginary parts of ``torch.fft.fft2`` of every channel (the form
MIMO-UNet introduced and NAFNet/DeepSN-Net-style restorers reuse). The FFT is unnormalised by
default (``norm="backward"``), so the frequency term grows with the patch area; with 0.1 it is of
the same order as the pixel term for 64-256 px patches.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RestorationLoss", "fft_l1", "psnr_loss", "PIXEL_LOSSES"]

#: Image-domain terms :class:`RestorationLoss` offers.
PIXEL_LOSSES = ("l1", "psnr")


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


def psnr_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """NAFNet's PSNR loss: ``mean_b 10 log10(MSE_b + eps)``, i.e. minus the mean per-image PSNR
    of images in [0, 1] (peak 1).

    Args:
        pred, target: ``(B, C, H, W)`` float tensors of the same shape.
        eps: keeps the logarithm finite for a perfect prediction (caps the PSNR at 80 dB).

    Returns:
        Scalar tensor in float32, e.g. -30.0 for a batch restored to 30 dB on average.
    """
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(mse + eps).mean()


class RestorationLoss(nn.Module):
    """``L1(pred, target) + fft_weight * L1(FFT(pred), FFT(target))``.

    Args:
        fft_weight: weight of the frequency term (paper: 0.1); 0 gives plain L1.
        norm: FFT normalisation (see :func:`fft_l1`).
        pixel: image-domain term, ``"l1"`` (the paper) or ``"psnr"`` ([ours], :func:`psnr_loss`).

    Call with ``pred, target`` of shape ``(B, 3, H, W)`` (values nominally in [0, 1]) to get the
    scalar loss; ``return_parts=True`` also returns ``{"l1": ..., "fft": ...}`` (detached), plus
    ``"psnr"`` (the PSNR loss) when ``pixel="psnr"``.
    """

    def __init__(self, fft_weight: float = 0.1, norm: str = "backward", pixel: str = "l1") -> None:
        super().__init__()
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel loss must be one of {PIXEL_LOSSES}, got {pixel!r}")
        self.pixel = pixel
        if fft_weight < 0:
            raise ValueError(f"fft_weight must be >= 0, got {fft_weight}")
        if norm not in ("backward", "ortho", "forward"):
            raise ValueError(f"norm must be 'backward', 'ortho' or 'forward', got {norm!r}")
        self.fft_weight = float(fft_weight)
        self.norm = norm

    def extra_repr(self) -> str:
        return f"pixel={self.pixel!r}, fft_weight={self.fft_weight}, norm={self.norm!r}"

    def forward(self, pred: torch.Tensor, target: torch.Tensor, return_parts: bool = False):
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
            )
        l1 = (pred.float() - target.float()).abs().mean()
        parts = {"l1": l1.detach()}
        if self.pixel == "psnr":
            total = psnr_loss(pred, target)
            parts["psnr"] = total.detach()
        else:
            total = l1
        if self.fft_weight > 0:
            freq = fft_l1(pred, target, self.norm)
            total = total + self.fft_weight * freq
        else:
            freq = torch.zeros((), device=pred.device)
        parts["fft"] = freq.detach()
        if return_parts:
            return total, parts
        return total
