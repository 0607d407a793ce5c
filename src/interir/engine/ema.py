"""Exponential moving average (EMA) of a model's weights.

``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, with the usual warm-up
``decay_t = min(decay, (1 + t) / (10 + t))`` so early averages are not dominated by the random
initialisation. Buffers are copied, not averaged. The average is kept in float32 on the model's
device; :meth:`ModelEMA.state_dict` has the same keys as the model, so EMA weights load into a
fresh model like ordinary weights.
"""

from __future__ import annotations

import torch
from torch import nn

from interir.engine.checkpoint import unwrap_model

__all__ = ["ModelEMA"]


class ModelEMA:
    """EMA of ``model``'s parameters (a ``DistributedDataParallel`` wrapper is unwrapped).

    Args:
        model: the network being trained.
        decay: target decay in (0, 1), e.g. 0.999.
        warmup: use the ``(1 + t) / (10 + t)`` warm-up of the decay.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = warmup
        self.updates = 0
        model = unwrap_model(model)
        self._param_names = {name for name, _ in model.named_parameters()}
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in model.state_dict().items()
        }

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average (call after ``optimizer.step()``)."""
        d = self.current_decay()
        self.updates += 1
        for k, v in unwrap_model(model).state_dict().items():
            s = self.shadow[k]
            if k in self._param_names and s.is_floating_point():
                s.mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                s.copy_(v.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, keyed like the model's ``state_dict()``."""
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int = 0) -> None:
        """Restore the average (``updates``: how many updates it has seen, for the warm-up)."""
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        for k, v in state.items():
            self.shadow[k].copy_(v.to(self.shadow[k].device))
        self.updates = int(updates)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (e.g. a copy used for validation)."""
        for k, v in unwrap_model(model).state_dict().items():
            v.copy_(self.shadow[k].to(dtype=v.dtype))
