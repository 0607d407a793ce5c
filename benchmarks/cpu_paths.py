"""Fast float32 on every CPU (issue 31): where the time goes, and which path is fastest.

Usage (from the repository root):

    .venv/bin/python benchmarks/cpu_paths.py --emulate-avx2        # an AVX2-only CPU, emulated
    .venv/bin/python benchmarks/cpu_paths.py                       # this CPU as it is
    .venv/bin/python benchmarks/cpu_paths.py --sections whole --image 4000x3000 --threads 2 \\
        --repeats 1 --out benchmarks/results/cpu_paths_12mp        # a 12-MP photo, idle machine
    .venv/bin/python benchmarks/cpu_paths.py --dry-run             # tiny sizes: checks the script

With the shipped default model, float32 (the precision ``auto`` picks on a CPU without native
bfloat16), it measures:

1. ``profile``: one forward pass on a tile, every ATen op timed and charged to the module that
   called it, grouped into 1x1 convolutions, the explainable conv (its convolution; its mask and
   pooling), LayerNorm, the gates, the residual scale-and-add, channel attention, the Kronecker
   matrix products and the rest; contiguous and channels-last memory.
2. ``tile``: one ``--tile-size`` photo run whole, interleaved: PyTorch contiguous (``interir
   eval``'s reference), PyTorch channels-last (``restore``'s float32 default), channels-last +
   bf16 (only on a CPU with native bf16), onnxruntime (``--backend onnx``) and, with
   ``--compile``, ``torch.compile`` of the channels-last model for that one shape (its compile
   seconds reported).
3. ``whole``: an ``--image`` photo through :func:`interir.inference.restore_tensor` with each
   ``--tilings`` entry (``backend:tile:overlap``), interleaved, with the PSNR of each result
   against the untiled PyTorch float32 result and against the clean photo.

The photos are the mosaics of ``benchmarks/inference_settings.py`` (CC0 test photos), degraded
with haze+rain+noise as ``interir synth`` does. Every figure is the median of ``--repeats``
interleaved runs, so a machine busy with other work slows every setting alike; the load average
(``os.getloadavg``) before and after each section is written beside it.

``--emulate-avx2`` re-runs the script with ``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``: PyTorch, oneDNN and MKL then
use AVX2 kernels only, and ``torch.backends.cpu.get_cpu_capability()`` says ``AVX2``, so
``precision="auto"`` picks float32 as on a real AVX2 machine. onnxruntime's MLAS kernels
ignore these variables and still use the host's AVX-512: its figures under emulation are not
AVX2 figures (the results say so). Results go to ``benchmarks/results/cpu_paths.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import copy
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import environment, results_stem, write_results
from inference_settings import degrade, photo
from torch.utils._python_dispatch import TorchDispatchMode

import interir
from interir.inference import restore_tensor
from interir.inference import cpu_has_native_bf16
from interir.metrics.image import psnr
from interir.models.explainable_conv import explanations_disabled

EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SECTIONS = ("profile", "tile", "whole")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="shipped name or checkpoint path")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--tile-size", type=int, default=512, help="side of the tile photo")
    parser.add_argument("--image", default="1536x1024", help="WIDTHxHEIGHT of the whole photo")
    parser.add_argument("--tilings", default="torch:512:64,onnx:512:64,torch:768:32,"
                        "onnx:768:32,onnx:1024:32",
                        help="backend:tile:overlap entries of the whole-photo section")
    parser.add_argument("--threads", default="1", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--no-onnx", action="store_true", help="leave onnxruntime out")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="re-run under AVX2-only PyTorch/oneDNN/MKL (see the docstring)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=results_stem(__file__))
    parser.add_argument("--update", action="store_true",
                        help="keep the other sections of the existing --out JSON (re-measure "
                             "only --sections)")
    parser.add_argument("--dry-run", action="store_true",
                        help="64-px tile, 192x128 photo, one run, no files unless --out is given")
    args = parser.parse_args(argv)
    args.section_list = [s.strip() for s in args.sections.split(",") if s.strip()]
    for name in args.section_list:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; use {', '.join(SECTIONS)}")
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if args.dry_run:
        args.tile_size, args.image, args.repeats = 64, "192x128", 1
        args.tilings = "torch:64:16,onnx:64:16"
        if "--out" not in (argv if argv is not None else sys.argv[1:]):
            args.out = None
    width, height = (int(v) for v in args.image.lower().split("x"))
    args.image_size = (width, height)
    args.tiling_list = []
    for item in args.tilings.split(","):
        backend, tile, overlap = item.strip().split(":")
        args.tiling_list.append((backend, int(tile), int(overlap)))
    return args


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _emulated() -> bool:
    return all(os.environ.get(k) == v for k, v in EMULATION.items())


def _psnr(a: torch.Tensor, b: torch.Tensor, quantize: bool = True) -> float:
    value = float(psnr(a.clamp(0, 1)[None] if a.dim() == 3 else a.clamp(0, 1),
                       b[None] if b.dim() == 3 else b, quantize=quantize))
    return value if math.isfinite(value) else 999.0


# ----------------------------------------------------------------------------------------------
# 1. profile


def _category(module: str, op: str) -> str:
    """[ours] The part of the network an op belongs to, from its module and name."""
    conv = op.startswith(("convolution", "conv2d", "_convolution"))
    if conv and module == "ExplainableConv2d":
        return "explainable conv: depthwise convolution"
    if module == "ExplainableConv2d":
        return "explainable conv: mask and pooling"
    if conv:
        return "other convolutions (1x1 and stem)"
    if module == "LayerNorm2d":
        return "LayerNorm (with layout copies)"
    if module == "SimpleGate":
        return "gating (SimpleGate)"
    if module == "WindowedMeanPool" or module == "AdaptiveAvgPool2d":
        return "channel attention pooling"
    if module == "EPBlock":
        return "EPBlock scale-and-add, attention product"
    if op.startswith(("bmm", "mm", "matmul", "_unsafe_view", "linalg_vector_norm")):
        return "Kronecker / factor matrix products"
    if op.startswith(("copy_", "clone", "_to_copy", "contiguous")):
        return "other copies"
    return "other element-wise"


class _OpTimer(TorchDispatchMode):
    """Times every ATen op and charges it to the innermost running module's class."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[_category(self.stack[-1], func.__name__)] += time.perf_counter() - start
        return out


def profile(model: torch.nn.Module, image: torch.Tensor) -> dict:
    """ms per category of one fp32 forward pass, contiguous and channels-last."""
    result = {}
    for layout in ("contiguous", "channels_last"):
        net = copy.deepcopy(model)
        x = image[None]
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        stack = ["InterIR"]
        hooks = []
        for module in net.modules():
            name = type(module).__name__
            hooks.append(module.register_forward_pre_hook(
                lambda mod, inp, n=name: stack.append(n) and None))
            hooks.append(module.register_forward_hook(lambda mod, inp, out: stack.pop() and None))
        with torch.inference_mode(), explanations_disabled(net):
            net(x)
            timer = _OpTimer(stack)
            with timer:
                net(x)
        for hook in hooks:
            hook.remove()
        total = sum(timer.seconds.values())
        result[layout] = {"total_ms": total * 1e3, "ms": {
            k: v * 1e3 for k, v in sorted(timer.seconds.items(), key=lambda kv: -kv[1])}}
    return result


# ----------------------------------------------------------------------------------------------
# 2. one tile


def tile_paths(model, degraded, clean, args, threads) -> dict:
    """Interleaved medians of every path on one image run whole."""
    from interir.inference.onnx_backend import onnx_runner

    x = degraded[None].contiguous()
    fp32 = model
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    paths = {"torch fp32 contiguous": lambda: fp32(x),
             "torch fp32 channels-last": lambda: cl_model(x_cl)}
    if cpu_has_native_bf16():
        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl_model(x_cl).float()
        paths["torch bf16 channels-last"] = bf16
    notes = {}
    if not args.no_onnx:
        runner = onnx_runner(model, 4, 4)
        notes["onnx_export_included"] = not runner.path("plain").exists()
        start = time.perf_counter()
        runner.session("plain")
        notes["onnx_session_s"] = time.perf_counter() - start
        paths["onnxruntime"] = lambda: runner.run(x)
    if args.compile:
        compiled = torch.compile(cl_model, dynamic=False)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x_cl)
        notes["compile_s"] = time.perf_counter() - start
        paths["torch.compile channels-last"] = lambda: compiled(x_cl)
    runs = {name: [] for name in paths}
    outputs = {}
    with torch.inference_mode(), explanations_disabled(fp32), explanations_disabled(cl_model):
        for name, fn in paths.items():  # warm-up, and the outputs
            outputs[name] = fn().float().clamp(0, 1)
        for _ in range(args.repeats):
            for name, fn in paths.items():
                start = time.perf_counter()
                fn()
                runs[name].append(time.perf_counter() - start)
    megapixels = x.shape[-1] * x.shape[-2] / 1e6
    reference = outputs["torch fp32 contiguous"]
    rows = {}
    for name, times in runs.items():
        median = statistics.median(times)
        rows[name] = {
            "runs_s": times, "median_s": median, "ms_per_mp": median * 1e3 / megapixels,
            "max_abs_diff_vs_fp32": float((outputs[name] - reference).abs().max()),
            "psnr_vs_clean": _psnr(outputs[name][0], clean),
        }
    for row in rows.values():
        row["speedup_vs_contiguous"] = rows["torch fp32 contiguous"]["median_s"] / row["median_s"]
        row["speedup_vs_channels_last"] = (rows["torch fp32 channels-last"]["median_s"]
                                           / row["median_s"])
        row["psnr_delta"] = row["psnr_vs_clean"] - rows["torch fp32 contiguous"]["psnr_vs_clean"]
    return {"threads": threads, "rows": rows, **notes}


# ----------------------------------------------------------------------------------------------
# 3. whole photo


def whole_photo(model, degraded, clean, args, threads) -> dict:
    """Interleaved medians of :func:`restore_tensor` per tiling, and their PSNRs."""
    width, height = args.image_size
    megapixels = width * height / 1e6
    settings = {f"{b} tile {t} overlap {o}": (b, t, o) for b, t, o in args.tiling_list}
    runs = {name: [] for name in settings}
    outputs = {}
    reference = None
    if megapixels <= 4:  # the untiled fp32 reference (its Kronecker factors grow with the size)
        start = time.perf_counter()
        reference = restore_tensor(model, degraded, tile=0, precision="fp32",
                                   channels_last=False, threads=threads)
        untiled_s = time.perf_counter() - start
    for name, (backend, tile, overlap) in settings.items():
        # Warm-up, untimed, on a crop of more than one tile: the ONNX exports (both graphs, a few
        # minutes the first time) are made here, not in a timed run.
        crop = degraded[:, : tile * 3 // 2, : tile * 3 // 2]
        restore_tensor(model, crop, tile=tile, overlap=overlap, precision="fp32",
                       backend=backend, threads=threads)
    for _ in range(args.repeats):
        for name, (backend, tile, overlap) in settings.items():
            start = time.perf_counter()
            out = restore_tensor(model, degraded, tile=tile, overlap=overlap,
                                 precision="fp32", backend=backend, threads=threads)
            runs[name].append(time.perf_counter() - start)
            outputs.setdefault(name, out)
    first = next(iter(settings))
    rows = {}
    for name, times in runs.items():
        median = statistics.median(times)
        row = {"runs_s": times, "median_s": median, "ms_per_mp": median * 1e3 / megapixels,
               "psnr_vs_clean": _psnr(outputs[name], clean),
               "psnr_vs_first": _psnr(outputs[name], outputs[first], quantize=False)}
        if reference is not None:
            row["psnr_vs_untiled"] = _psnr(outputs[name], reference, quantize=False)
        rows[name] = row
    for row in rows.values():
        row["speedup_vs_first"] = rows[first]["median_s"] / row["median_s"]
        row["psnr_delta_vs_first"] = row["psnr_vs_clean"] - rows[first]["psnr_vs_clean"]
    import resource
    result = {"threads": threads, "rows": rows, "size": f"{width}x{height}",
              # Linux reports kilobytes: the process's high-water mark, every setting so far.
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if reference is not None:
        result["untiled_s"] = untiled_s
        result["untiled_psnr_vs_clean"] = _psnr(reference, clean)
    return result


# ----------------------------------------------------------------------------------------------
# report


def markdown(result: dict, argv: list[str]) -> str:
    env = result["environment"]
    kind = ("**emulated AVX2-only CPU** (an AVX-512/AMX machine with "
            "`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`; "
            "onnxruntime's own kernels still use AVX-512 there)" if result["emulated"]
            else "this CPU as it is (no emulation)")
    lines = [
        "# Float32 paths on the CPU (benchmarks/cpu_paths.py, issue 31)", "",
        f"CPU: {kind}. `torch.backends.cpu.get_cpu_capability()` = "
        f"**{env['cpu_capability']}**; native bf16: {result['native_bf16']}; "
        f"torch {env.get('torch')}; model `{result['model']}`; {result['cpu_count']} cores. "
        f"Medians of {result['repeats']} interleaved runs."
        + (f" The {', '.join(result['updated_sections'])} section(s) were re-measured later by "
           f"the same command with `--sections {','.join(result['updated_sections'])} --update`."
           if result.get("updated_sections") else ""), "",
        "A 12-MP photo on an idle machine (the aim: < 45 s on 2 AVX2 cores):", "",
        "```bash",
        ".venv/bin/python benchmarks/cpu_paths.py --sections whole --image 4000x3000 "
        "--threads 2 --repeats 1 --tilings torch:512:64,onnx:512:64,onnx:1024:32 "
        "--out benchmarks/results/cpu_paths_12mp   # add --emulate-avx2 on an AVX-512 machine",
        "```", ""]
    if "profile" in result:
        lines += ["## Where the float32 time goes (one tile, 1 thread)", "",
                  f"{result['tile_side']} px tile; every ATen op timed and charged to its "
                  f"module ({result['profile_load']}).", "",
                  "| part | contiguous ms | % | channels-last ms | % |",
                  "|---|---:|---:|---:|---:|"]
        prof = result["profile"]
        names = list(prof["contiguous"]["ms"])
        for extra in prof["channels_last"]["ms"]:
            if extra not in names:
                names.append(extra)
        for name in names:
            a = prof["contiguous"]["ms"].get(name, 0.0)
            b = prof["channels_last"]["ms"].get(name, 0.0)
            lines.append(f"| {name} | {a:.0f} | {100 * a / prof['contiguous']['total_ms']:.0f} | "
                         f"{b:.0f} | {100 * b / prof['channels_last']['total_ms']:.0f} |")
        lines.append(f"| **total** | {prof['contiguous']['total_ms']:.0f} | | "
                     f"{prof['channels_last']['total_ms']:.0f} | |")
        lines.append("")
    for entry in result.get("tile", []):
        lines += [f"## One {result['tile_side']} px tile, {entry['threads']} thread(s)", "",
                  f"({entry['load']})", "",
                  "| path | ms / MP | vs contiguous | vs channels-last | max abs diff to fp32 |"
                  " PSNR vs clean | Δ dB |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in entry["rows"].items():
            lines.append(f"| {name} | {row['ms_per_mp']:.0f} | {row['speedup_vs_contiguous']:.2f}x"
                         f" | {row['speedup_vs_channels_last']:.2f}x | "
                         f"{row['max_abs_diff_vs_fp32']:.1e} | {row['psnr_vs_clean']:.3f} | "
                         f"{row['psnr_delta']:+.3f} |")
        if "compile_s" in entry:
            lines.append(f"\ntorch.compile: {entry['compile_s']:.0f} s to compile and run the "
                         "first call (one shape).")
        if "onnx_session_s" in entry:
            what = ("to export the model (once per weights and model code) and open the session"
                    if entry.get("onnx_export_included") else
                    "to open the session (the export, once per weights, was cached)")
            lines.append(f"\nonnxruntime: {entry['onnx_session_s']:.1f} s {what}.")
        lines.append("")
    for entry in result.get("whole", []):
        lines += [f"## Whole photo {entry['size']}, {entry['threads']} thread(s)", "",
                  f"`restore_tensor(precision='fp32', backend=..., tile=..., overlap=...)`, "
                  f"shared statistics ({entry['load']}). "
                  + (f"Untiled PyTorch fp32 reference: {entry['untiled_s']:.1f} s, "
                     f"{entry['untiled_psnr_vs_clean']:.3f} dB vs clean." if "untiled_s" in entry
                     else "")
                  + (f" Peak resident memory of the benchmark process after this section: "
                     f"{entry['peak_rss_mb']:.0f} MB (every setting, and the script's own copies "
                     "of the photo and outputs: not `restore`'s peak)." if "peak_rss_mb" in entry
                     else ""), "",
                  "| setting | s | ms / MP | speed-up | PSNR vs untiled | PSNR vs clean |"
                  " Δ dB vs first |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in entry["rows"].items():
            vs_untiled = f"{row['psnr_vs_untiled']:.2f}" if "psnr_vs_untiled" in row else "—"
            lines.append(f"| {name} | {row['median_s']:.2f} | {row['ms_per_mp']:.0f} | "
                         f"{row['speedup_vs_first']:.2f}x | {vs_untiled} | "
                         f"{row['psnr_vs_clean']:.3f} | {row['psnr_delta_vs_first']:+.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.emulate_avx2 and not _emulated():
        env = {**os.environ, **EMULATION}
        return subprocess.call([sys.executable, __file__, *argv], env=env)
    model = interir.load_pretrained(args.model).eval()
    result = {"emulated": _emulated(), "native_bf16": cpu_has_native_bf16(),
              "model": args.model, "repeats": args.repeats, "cpu_count": os.cpu_count(),
              "tile_side": args.tile_size, "environment": environment()}
    print(f"capability {result['environment']['cpu_capability']}, emulated {result['emulated']}"
          f", {_load()}", flush=True)
    side = args.tile_size
    clean_tile = photo(side, side)
    tile, _ = degrade(clean_tile, args.seed)
    if "profile" in args.section_list:
        torch.set_num_threads(1)
        result["profile_load"] = _load()
        result["profile"] = profile(model, tile)
        print("profile", {k: round(v["total_ms"]) for k, v in result["profile"].items()},
              flush=True)
    for threads in args.thread_counts:
        torch.set_num_threads(threads)
        if "tile" in args.section_list:
            before = _load()
            entry = tile_paths(model, tile, clean_tile, args, threads)
            entry["load"] = f"before: {before}; after: {_load()}"
            result.setdefault("tile", []).append(entry)
            print("tile", threads, {k: round(v["ms_per_mp"]) for k, v in entry["rows"].items()},
                  flush=True)
        if "whole" in args.section_list:
            width, height = args.image_size
            clean = photo(width, height)
            degraded, _ = degrade(clean, args.seed + 1)
            before = _load()
            entry = whole_photo(model, degraded, clean, args, threads)
            entry["load"] = f"before: {before}; after: {_load()}"
            result.setdefault("whole", []).append(entry)
            print("whole", threads, {k: round(v["median_s"], 2) for k, v in entry["rows"].items()},
                  flush=True)
    if args.update and args.out is not None and Path(args.out).with_suffix(".json").exists():
        import json
        old = json.loads(Path(args.out).with_suffix(".json").read_text())
        for key in ("profile", "profile_load", "tile", "whole"):
            if key in old and key not in result:
                result[key] = old[key]
        result["updated_sections"] = args.section_list
        result["repeats"] = old.get("repeats", result["repeats"])  # of the sections kept
        argv = [a for a in old.get("command", "").split()[2:]] or argv
    text = markdown(result, argv)
    if args.out is None:
        print(text)
        return 0
    data = {k: v for k, v in result.items() if k != "environment"}
    for path in write_results(args.out, data, text, __file__, argv):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
