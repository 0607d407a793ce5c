"""Helpers shared by the degradation modules: input checks and per-image random fields."""

from __future__ import annotations

import torch

__all__ = ["check_batch", "per_image_field", "as_batch_vector", "SEED_HIGH"]

#: Upper bound (exclusive) of the per-image integer seeds drawn by the samplers.
SEED_HIGH = 2**62


def check_batch(x: torch.Tensor, what: str = "image batch") -> None:
    """Raise a clear error unless ``x`` is a float ``(B, C, H, W)`` batch with C in {1, 3}."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{what} must have shape (B, C, H, W), got {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0)"
        )
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"{what} must have 1 (grayscale) or 3 (RGB) channels, got {x.shape[1]}; "
            "drop alpha channels before degrading"
        )
    if not x.is_floating_point():
        raise TypeError(f"{what} must be float in [0, 1], got dtype {x.dtype}; use x.float() / 255")


def as_batch_vector(
    value: torch.Tensor | float | int, batch: int, device: torch.device, dtype=torch.float32
) -> torch.Tensor:
    """A scalar or ``(B,)`` value as a ``(B,)`` tensor on ``device``."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"expected a scalar or a ({batch},) tensor, got shape {tuple(t.shape)}")
    return t


def per_image_field(
    seeds: torch.Tensor,
    shape: tuple[int, ...],
    normal: bool,
    device: torch.device,
    dtype: torch.dtype,
    rng_device: str = "cpu",
) -> torch.Tensor:
    """One random field per image, each drawn from its own generator seeded with ``seeds[i]``.

    Because every image has its own seed, an image's field does not depend on the other images
    in the batch or on the batch order.

    Args:
        seeds: ``(B,)`` int64 seeds.
        shape: shape of one image's field.
        normal: standard normal (True) or uniform [0, 1) (False) values.
        device: device of the returned tensor.
        dtype: dtype of the returned tensor.
        rng_device: ``"cpu"`` draws on the CPU (bit-identical on every machine, the default) and
            copies; ``"same"`` draws on ``device`` (faster on GPU, identical only on the same
            device type).

    Returns:
        ``(B, *shape)`` tensor.
    """
    if rng_device not in ("cpu", "same"):
        raise ValueError(f"rng_device must be 'cpu' or 'same', got {rng_device!r}")
    gen_device = torch.device("cpu") if rng_device == "cpu" else torch.device(device)
    out = []
    for s in seeds.tolist():
        g = torch.Generator(device=gen_device)
        g.manual_seed(int(s))
        if normal:
            out.append(torch.randn(shape, generator=g, device=gen_device, dtype=torch.float32))
        else:
            out.append(torch.rand(shape, generator=g, device=gen_device, dtype=torch.float32))
    if not out:
        return torch.zeros((0, *shape), device=device, dtype=dtype)
    return torch.stack(out).to(device=device, dtype=dtype)
