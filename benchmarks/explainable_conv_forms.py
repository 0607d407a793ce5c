"""Time the explainable conv's two forms of Eq. 17 and of Eq. 20 inside a training step.

Issue 18 item 4: the export form (cumulative-sum pooling, depthwise kernels as k x k shifted
multiply-adds) and the eager form (``adaptive_avg_pool2d``, one grouped conv over the folded batch)
give the same numbers; the eager path keeps whichever is faster. This times forward + backward of
an ``interir-small`` (batch 8, 64 x 64, one thread) with each combination, interleaved in one
process (the machine may be loaded), and reports the median of the repeats.

    python benchmarks/explainable_conv_forms.py [--repeats 7]       # -> results/explainable_conv_forms.{json,md}
    python benchmarks/explainable_conv_forms.py --inference --batch 1 --size 256
                                           # -> results/explainable_conv_forms_inference.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import results_stem, write_results

import interir
from interir.models.explainable_conv import ExplainableConv2d
from interir.models.layers import adaptive_avg_pool2d_exportable

FORMS = {  # name: (pooling, application)
    "eager (adaptive pool, grouped conv)": ("adaptive", "grouped"),
    "cumsum pool, grouped conv": ("cumsum", "grouped"),
    "adaptive pool, shifted multiply-add": ("adaptive", "shifted"),
    "export (cumsum pool, shifted multiply-add)": ("cumsum", "shifted"),
}


def _model() -> torch.nn.Module:
    model = interir.create_model("interir-small")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # open the gates, as training does, so every block does work
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma", "gate")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.train()


def _set_forms(pooling: str, application: str) -> None:
    """Make every explainable conv use the named forms, whether exporting or not."""
    def pool(self, mask):
        if pooling == "cumsum":
            return adaptive_avg_pool2d_exportable(mask, *self.kernel_size)
        return F.adaptive_avg_pool2d(mask, self.kernel_size)

    def convolve(self, x, attention):
        if application == "shifted":
            return self._convolve_shifted(x, attention)
        return self._convolve_grouped(x, attention)

    ExplainableConv2d._pool = pool
    ExplainableConv2d._convolve = convolve


def _step(model: torch.nn.Module, x: torch.Tensor, inference: bool) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    if inference:
        with torch.inference_mode():
            model(x)
    else:
        model(x).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--inference", action="store_true", help="forward only, no gradients")
    parser.add_argument("--out", type=Path, default=None,
                        help="results stem (STEM.json, STEM.md); default "
                             "results/explainable_conv_forms[_inference]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _model() if not args.inference else _model().eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    times: dict[str, list[float]] = {name: [] for name in FORMS}
    for name, forms in FORMS.items():  # warm-up, one step each
        _set_forms(*forms)
        _step(model, x, args.inference)
    for _ in range(args.repeats):
        for name, forms in FORMS.items():
            _set_forms(*forms)
            times[name].append(_step(model, x, args.inference))
    result = {name: round(statistics.median(t) * 1000, 1) for name, t in times.items()}
    for name, ms in result.items():
        print(f"{ms:8.1f} ms  {name}")
    stem = args.out or results_stem(__file__).with_name(
        results_stem(__file__).name + ("_inference" if args.inference else ""))
    table = ["# Explainable conv forms: median ms of one "
             + ("forward" if args.inference else "forward + backward"), "",
             f"`interir-small`, batch {args.batch}, {args.size} x {args.size}, 1 thread, "
             f"{torch.backends.cpu.get_cpu_capability()}, median of {args.repeats}.", "",
             "| form | ms |", "|---|---:|"] + [f"| {n} | {ms:.1f} |" for n, ms in result.items()]
    write_results(stem, {"batch": args.batch, "size": args.size, "threads": 1,
                         "inference": args.inference, "repeats": args.repeats,
                         "median_ms": result}, "\n".join(table), __file__)


if __name__ == "__main__":
    main()
