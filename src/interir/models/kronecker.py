"""The Kronecker-factored degradation operator (design Eq. 3).

A degradation ``P`` acting on a whole channel (an (H'W') x (H'W') matrix) is factorised as
``P = P_h (x) P_w^T`` so that on a channel ``X`` (H' x W'):

    P(X)      = P_h  @ X @ P_w
    P^T(X)    = P_h^T @ X @ P_w^T
    P^T P (X) = (P_h^T P_h) @ X @ (P_w P_w^T)

Cost per channel is H'W'(H' + W') multiply-adds instead of (H'W')^2. The factors are computed
from features (never stored parameters), so any image size works.
"""

from __future__ import annotations

import torch


def frobenius_normalize(matrices: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The design's normalisation N: divide each trailing (n x m) matrix by its Frobenius norm."""
    norm = matrices.flatten(-2).norm(dim=-1).clamp_min(eps)
    return matrices / norm[..., None, None]


class KroneckerOperator:
    """Applies ``P``, ``P^T`` and ``P^T P`` for per-(sample, channel) factors.

    Args:
        p_h: ``(B, C, H', H')`` row factor.
        p_w: ``(B, C, W', W')`` column factor.

    All methods take and return ``(B, C, H', W')`` tensors.
    """

    def __init__(self, p_h: torch.Tensor, p_w: torch.Tensor) -> None:
        if p_h.shape[-1] != p_h.shape[-2] or p_w.shape[-1] != p_w.shape[-2]:
            raise ValueError(f"factors must be square, got {tuple(p_h.shape)} and {tuple(p_w.shape)}")
        self.p_h = p_h
        self.p_w = p_w
        self._gram_h: torch.Tensor | None = None
        self._gram_w: torch.Tensor | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``P(X) = P_h X P_w``."""
        return self.p_h @ x @ self.p_w

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``P^T(Y) = P_h^T Y P_w^T``; satisfies <P x, y> = <x, P^T y>."""
        return self.p_h.transpose(-1, -2) @ y @ self.p_w.transpose(-1, -2)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``P^T P (X)`` with the two Gram factors computed once and reused across calls."""
        if self._gram_h is None:
            self._gram_h = self.p_h.transpose(-1, -2) @ self.p_h
            self._gram_w = self.p_w @ self.p_w.transpose(-1, -2)
        return self._gram_h @ x @ self._gram_w
