"""Small building blocks shared by the networks: channel LayerNorm, SimpleGate, windowed mean
pooling, size padding."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def is_exporting() -> bool:
    """True while ``torch.jit`` traces or scripts, or ``torch.onnx`` exports, the running code.

    Forms whose exported graph would bake in the example's sizes branch on it.
    """
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


#: True inside :func:`batch_one_export_form` (see there).
_BATCH_ONE_FORM = False


def is_batch_one_export() -> bool:
    """True inside :func:`batch_one_export_form`: the export being made is for batch 1 only."""
    return _BATCH_ONE_FORM


@contextlib.contextmanager
def batch_one_export_form() -> Iterator[None]:
    """[ours] Within the block, an export (:func:`is_exporting`) uses the faster forms of a
    fixed batch of 1 and ONNX opset >= 17, which the portable export avoids.

    - :class:`LayerNorm2d` exports as one fused ``LayerNormalization`` instead of plain ops;
    - a depthwise :class:`~interir.models.explainable_conv.ExplainableConv2d` exports as one
      ``Conv`` with its per-image kernel (Eq. 19) as a computed weight, instead of ``k x k``
      shifted multiply-adds. Its batch is then fixed at 1.

    Same maths; onnxruntime ran the shipped model 2.1-2.8x faster on one CPU thread in this form
    than in the portable one (a 512 px tile; ``docs/inference.md``, issue 31). Used by
    :mod:`interir.inference.onnx_backend`.
    """
    global _BATCH_ONE_FORM
    previous, _BATCH_ONE_FORM = _BATCH_ONE_FORM, True
    try:
        yield
    finally:
        _BATCH_ONE_FORM = previous


def adaptive_avg_pool2d_exportable(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, (out_h, out_w))`` written with cumulative sums and index_select.

    Bin ``i`` along an axis of length ``n`` covers ``[floor(i n / k), ceil((i + 1) n / k))``, as in
    PyTorch; the bin bounds are tensors computed from the (possibly symbolic) size, so the traced
    graph is correct for every input size. Exact for 0/1 masks (integer sums below 2^24).

    Args:
        x: ``(..., H, W)`` float tensor.
        out_h, out_w: output size.

    Returns:
        ``(..., out_h, out_w)`` tensor.
    """
    start_h, end_h = _bin_bounds(x.shape[-2], out_h, x.device)
    start_w, end_w = _bin_bounds(x.shape[-1], out_w, x.device)
    cumulative = F.pad(x.cumsum(-2), (0, 0, 1, 0))
    rows = cumulative.index_select(-2, end_h) - cumulative.index_select(-2, start_h)
    cumulative = F.pad(rows.cumsum(-1), (1, 0))
    sums = cumulative.index_select(-1, end_w) - cumulative.index_select(-1, start_w)
    area = ((end_h - start_h).unsqueeze(1) * (end_w - start_w).unsqueeze(0)).to(x.dtype)
    return sums / area


def _bin_bounds(n, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end of adaptive pooling's ``k`` bins over an axis of (possibly symbolic) length n."""
    i = torch.arange(k, device=device)
    start = torch.div(i * n, k, rounding_mode="floor")
    end = torch.div((i + 1) * n + (k - 1), k, rounding_mode="floor")
    return start, end


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` map, independently per pixel.

    Unlike BatchNorm it never mixes samples, which keeps every network here batch-independent.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_exporting() and not is_batch_one_export():
            # Plain ops: every ONNX opset has them (LayerNormalization needs opset 17).
            var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
            normed = (x - mean) * torch.rsqrt(var + self.eps)
            return torch.addcmul(self.bias.view(1, -1, 1, 1), normed, self.weight.view(1, -1, 1, 1))
        # [ours] PyTorch's fused layer_norm over the last axis of the channels-last view: on the
        # CPU 4-20x faster than var_mean over dim 1 in channels-last memory and 1.6-6x in
        # contiguous memory, forward or forward and backward (benchmarks/results/layernorm_speed.md);
        # the same arithmetic to float rounding.
        normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        out = normed.permute(0, 3, 1, 2)
        # Keep the input's memory format, so that a network stays in the one it was given.
        return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


class SimpleGate(nn.Module):
    """Split the channels into two halves and multiply them: ``(B, 2C, H, W) -> (B, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


def _shifted_window_mean(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Mean over ``window`` consecutive entries along ``dim``, the window shifted to stay inside.

    Entry ``i`` of an axis of length ``n`` averages ``[start, end)`` with ``start = clamp(i -
    window // 2, 0, max(n - window, 0))`` and ``end = min(start + window, n)``; when ``n <= window``
    every entry gets the mean of the whole axis. Written without branches on ``n`` (positions come
    from a cumulative sum, not ``arange``), so a traced or exported network keeps it for any size.
    """
    moved = x.movedim(dim, -1)
    # Float64 prefix sums: in float32 the difference of two large sums loses the window's mean.
    sums = torch.cumsum(moved.to(torch.float64), dim=-1)
    sums = torch.cat([torch.zeros_like(sums[..., :1]), sums], dim=-1)
    position = torch.cumsum(torch.ones_like(sums[(0,) * (sums.dim() - 1)][1:]), dim=0) - 1  # 0..n-1
    length = position[-1:] + 1
    start = torch.minimum((position - window // 2).clamp(min=0), (length - window).clamp(min=0))
    end = torch.minimum(start + window, length)
    total = sums.index_select(-1, end.long()) - sums.index_select(-1, start.long())
    return (total / (end - start)).to(x.dtype).movedim(-1, dim)


def _shifted_window_mean_2d(x: torch.Tensor, window: int) -> torch.Tensor:
    """Both axes of :func:`_shifted_window_mean` at once from one integral image (eager mode).

    The window sums for every start position inside the image are differences of the integral
    image; positions near a border share the sum of the first or last start, i.e. a replicate
    padding of those sums. About 2.5x faster than gathering per axis, but the sizes it slices by
    are Python numbers, so tracing uses the gather form.
    """
    win_h, win_w = min(window, x.shape[-2]), min(window, x.shape[-1])
    # Float64 prefix sums: in float32 the difference of two large sums loses the window's mean.
    sums = F.pad(torch.cumsum(torch.cumsum(x.to(torch.float64), dim=-2), dim=-1), (1, 0, 1, 0))
    inner = (
        sums[..., win_h:, win_w:] - sums[..., :-win_h, win_w:]
        - sums[..., win_h:, :-win_w] + sums[..., :-win_h, :-win_w]
    ) / (win_h * win_w)
    padding = (win_w // 2, win_w - 1 - win_w // 2, win_h // 2, win_h - 1 - win_h // 2)
    return F.pad(inner.to(x.dtype), padding, mode="replicate")


class WindowedMeanPool(nn.Module):
    """Global average pooling, or its local version for images larger than the training patches.

    ``window == 0``: ``(B, C, H, W) -> (B, C, 1, 1)``, the plain global average pooling.
    ``window > 0``: ``(B, C, H, W) -> (B, C, H, W)``, the mean over the ``window x window`` square
    around each position, shifted at the borders so that it stays inside the image. On a map no
    larger than the window this equals the global average at every position (up to rounding), so
    a network trained on such patches behaves identically on them; on larger images its channel
    statistics stay those of a training-sized neighbourhood. This is the test-time local converter (TLC) of Chu et
    al., "Improving Image Restoration by Revisiting Global Information Aggregation" (ECCV 2022),
    which NAFNet uses for the same global pooling.
    """

    def __init__(self, window: int = 0) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"window must be >= 0 (0 = global pooling), got {window}")
        self.window = int(window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window == 0:
            return x.mean(dim=(-2, -1), keepdim=True)
        if is_exporting():
            # Exported graphs must not bake the window's size relative to the traced image in.
            return _shifted_window_mean(_shifted_window_mean(x, self.window, -2), self.window, -1)
        return _shifted_window_mean_2d(x, self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}" if self.window else "global"


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom/right of ``x`` so H and W become multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`. Reflection (rather
    than zeros) keeps the image statistics at the border, which matters for the Gram-matrix
    initialisation of the degradation factors; when the image is too small to reflect (pad >= size)
    the edge is replicated instead. When exporting (:func:`is_exporting`) it always reflects, by
    amounts computed from the traced or symbolic size, so the graph serves every size >= multiple.
    """
    height, width = x.shape[-2], x.shape[-1]
    if is_exporting():
        # No branch on the size: an exported graph pads any size (>= multiple, maybe by zero).
        pad_h = (height + multiple - 1) // multiple * multiple - height
        pad_w = (width + multiple - 1) // multiple * multiple - width
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect"), (height, width)
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (H, W)``."""
    return x[..., : size[0], : size[1]]


def check_image_batch(x: object, min_size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, 3, H, W)`` floating tensor with H, W >= min_size."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"expected a batch of RGB images of shape (B, 3, H, W), got shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0) or convert grayscale with x.expand(-1, 3, -1, -1)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert 8-bit images with x.float() / 255"
        )
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"image of size {x.shape[-2]}x{x.shape[-1]} is smaller than this model's minimum "
            f"{min_size}x{min_size}; upscale or pad it first"
        )
