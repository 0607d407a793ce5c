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

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The square factors ``(P_h, P_w)``."""
        return self.p_h, self.p_w


class LowRankKronecker:
    """[ours] A Kronecker operator whose factors are low-rank: ``P_h = A_h B_h^T``, ``P_w = A_w B_w^T``.

    Trained with Gram-initialised square factors, core v2's operator ended near rank 1 (a rank-1
    cut changed PSNR by +0.02 dB, docs/architecture.md): this form admits it and costs
    ``O(r H' W')`` per channel instead of ``O(H' W' (H' + W'))``.

    Args:
        packed_h: ``(B, C, H', 2r)``, ``A_h`` then ``B_h`` along the last axis.
        packed_w: ``(B, C, W', 2r)``, ``A_w`` then ``B_w``.

    Each factor is scaled to unit Frobenius norm (the design's normalisation N).
    """

    def __init__(self, packed_h: torch.Tensor, packed_w: torch.Tensor) -> None:
        self.a_h, self.b_h = _normalised_pair(packed_h)
        self.a_w, self.b_w = _normalised_pair(packed_w)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``P(X) = A_h (B_h^T X A_w) B_w^T``."""
        core = self.b_h.transpose(-1, -2) @ x @ self.a_w
        return (self.a_h @ core) @ self.b_w.transpose(-1, -2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``P^T(Y) = B_h (A_h^T Y B_w) A_w^T``."""
        core = self.a_h.transpose(-1, -2) @ y @ self.b_w
        return (self.b_h @ core) @ self.a_w.transpose(-1, -2)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``P^T P (X)``."""
        return self.adjoint(self.apply(x))

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The square factors ``(P_h, P_w)``, ``(B, C, H', H')`` and ``(B, C, W', W')`` (for
        explanations; the network never forms them)."""
        return self.a_h @ self.b_h.transpose(-1, -2), self.a_w @ self.b_w.transpose(-1, -2)


def _normalised_pair(packed: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(..., n, 2r)`` into ``A, B`` ``(..., n, r)`` and scale both so ``||A B^T||_F = 1``.

    ``||A B^T||_F^2 = sum((A^T A) * (B^T B))``: an ``r x r`` product, never the ``n x n`` matrix.
    """
    a, b = packed.chunk(2, dim=-1)
    norm_sq = ((a.transpose(-1, -2) @ a) * (b.transpose(-1, -2) @ b)).sum(dim=(-2, -1))
    scale = norm_sq.clamp_min(eps).rsqrt().sqrt()[..., None, None]
    return a * scale, b * scale
