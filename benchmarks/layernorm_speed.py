"""How fast is the channel LayerNorm of every network here, in its two forms?

Usage (from the repository root, on a machine nothing else is running on):

    .venv/bin/python benchmarks/layernorm_speed.py              # about a minute
    .venv/bin/python benchmarks/layernorm_speed.py --repeats 2  # a quick check

``LayerNorm2d`` normalises a ``(B, C, H, W)`` map over C at every pixel. Two forms, the same
arithmetic to float rounding:

- ``var_mean``: ``torch.var_mean`` over dim 1, then ``(x - mean) * rsqrt(var + eps)`` and an
  ``addcmul`` for the affine part (our first form; still used while exporting to ONNX);
- ``layer_norm``: :class:`interir.models.layers.LayerNorm2d` as the networks run it now: PyTorch's
  fused ``F.layer_norm`` over the last axis of the channels-last view ``x.permute(0, 2, 3, 1)``,
  permuted back (and made contiguous again when the input was).

Each is timed forward (no grad) and forward + backward, in float32 and under bf16 autocast (the
restore default), in contiguous (NCHW) and channels-last memory, at the shapes the default model
meets on a 512 x 512 photo (48 channels at 128 x 128 in the unfolded stages; 16 channels at
512 x 512 in the full-resolution refinement). Median of ``--repeats`` runs after one warm-up.
Results go to ``benchmarks/results/layernorm_speed.{json,md}`` (``--out STEM``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import median_ms, results_stem, time_calls, write_results

from interir.models.layers import LayerNorm2d

SHAPES = [(48, 128), (16, 512)]


def var_mean_form(norm: LayerNorm2d):
    """Our first form, with ``norm``'s parameters: var_mean over dim 1, then addcmul."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        normed = (x - mean) * torch.rsqrt(var + norm.eps)
        return torch.addcmul(norm.bias.view(1, -1, 1, 1), normed, norm.weight.view(1, -1, 1, 1))
    return forward


def layer_norm_form(norm: LayerNorm2d):
    """The networks' own ``LayerNorm2d`` (its current, fused form)."""
    return norm


FORMS = {"var_mean": var_mean_form, "layer_norm": layer_norm_form}


def time_one(form, x: torch.Tensor, backward: bool, bf16: bool, repeats: int) -> float:
    """Median milliseconds of one call (forward, or forward + backward of a sum of squares)."""
    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if backward:
                form(x).float().square().sum().backward()
            else:
                with torch.no_grad():
                    form(x)
    return median_ms(time_calls(call, repeats))


def measure(repeats: int) -> list[dict]:
    rows = []
    for channels, side in SHAPES:
        norm = LayerNorm2d(channels)
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
        forms = {name: make(norm) for name, make in FORMS.items()}
        for memory in ("contiguous", "channels_last"):
            fmt = torch.channels_last if memory == "channels_last" else torch.contiguous_format
            x = torch.randn(1, channels, side, side).contiguous(memory_format=fmt).requires_grad_()
            with torch.no_grad():
                diff = float((forms["var_mean"](x) - forms["layer_norm"](x)).abs().max())
            for bf16 in (False, True):
                for backward in (False, True):
                    ms = {name: time_one(f, x, backward, bf16, repeats) for name, f in forms.items()}
                    rows.append({"channels": channels, "side": side, "memory": memory,
                                 "precision": "bf16" if bf16 else "fp32",
                                 "pass": "forward+backward" if backward else "forward",
                                 "ms": ms, "speedup": ms["var_mean"] / ms["layer_norm"],
                                 "max_abs_diff_fp32": diff})
    return rows


def report(rows: list[dict]) -> str:
    lines = [
        "# Channel LayerNorm: var_mean form vs fused layer_norm",
        "",
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, "
        f"{torch.backends.cpu.get_cpu_capability()}; median ms of one call.",
        "",
        "| C x H x W | memory | precision | pass | var_mean (ms) | layer_norm (ms) | speed-up |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['channels']} x {r['side']} x {r['side']} | {r['memory']} | {r['precision']} | "
                     f"{r['pass']} | {r['ms']['var_mean']:.2f} | {r['ms']['layer_norm']:.2f} | "
                     f"{r['speedup']:.1f}x |")
    worst = max(r["max_abs_diff_fp32"] for r in rows)
    lines += ["", f"Largest float32 difference between the two forms' outputs: {worst:.1e} "
              "(random unit-variance input)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=results_stem(__file__),
                        help="results stem: writes STEM.json and STEM.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args.repeats)
    paths = write_results(args.out, {"rows": rows}, report(rows), __file__, argv)
    print(paths[-1].read_text())
    return paths[-1]


if __name__ == "__main__":
    main()
