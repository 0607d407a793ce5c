"""The device run's phases, each recorded in ``report.json`` as soon as it ends (see the package doc).

A phase that fails is recorded with its error and the next one still runs, so one broken step
does not cost the whole lease. The exit status is 0 when every phase ran and every CUDA test
that ran passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from interir._version import __version__
from interir.data.validation_pairs import build_val_pairs
from interir.engine.train import TrainResult
from interir.gpurun.bench import precision_flags, speed_rows
from interir.gpurun.cudatests import run_cuda_tests
from interir.gpurun.options import PHASE_ENDS, Budget, parse_options
from interir.gpurun.prepare import prepare_main, read_manifest
from interir.gpurun.report import (MAX_FILE_BYTES, RUN_FILES, copy_tail, device_info, out_files, weights_room,
                                   write_report)
from interir.gpurun.training import (best_candidate, measure_throughput, plan_run, recipe, score,
                                     score_spec, train_planned)
from interir.gpurun.weights import MiB, join_weights, read_weights, stored_dtype, write_weights
from interir.loading import load_model
from interir.utils.env import git_info

__all__ = ["main", "Run"]

#: Seconds the CUDA tests and the speed table get even when the budget's share is spent.
TESTS_FLOOR_S = 120.0
BENCH_FLOOR_S = 20.0


@dataclass
class Run:
    """The state the phases share: options, budget, folders and the report being filled."""

    opts: argparse.Namespace
    budget: Budget
    out: Path
    work: Path
    report: dict[str, Any]

    def say(self, text: str) -> None:
        print(f"[device-run +{self.budget.elapsed():4.0f}s] {text}", flush=True)

    def save(self) -> None:
        self.report["budget"]["elapsed_s"] = round(self.budget.elapsed(), 1)
        write_report(self.out, self.report)


def _start(opts: argparse.Namespace) -> Run:
    out = opts.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else opts.work / "out")
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}
    options.update(device=str(opts.device), out=str(out))
    report = {
        "kind": "interir-device-run", "status": "running", "interir": __version__,
        "git": git_info(Path.cwd()),
        "started": datetime.fromtimestamp(opts.started_at, timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(opts.device), "options": options,
        "data": {"root": str(opts.data), "prepared": read_manifest(opts.data)},
        "budget": {"minutes": opts.minutes, "elapsed_s": 0.0}, "phases": {}, "errors": [],
    }
    run = Run(opts, Budget(opts.minutes * 60.0, opts.started_at), out, opts.work, report)
    opts.work.mkdir(parents=True, exist_ok=True)
    run.save()
    return run


def _phase(run: Run, name: str, body: Callable[[Run], None]) -> None:
    """Run one phase, recording its time and any error in the report."""
    if name in run.opts.skip:
        run.report["phases"][name] = {"status": "skipped"}
        return
    run.say(f"{name}: start")
    start, status = time.perf_counter(), "ok"
    try:
        body(run)
    except Exception as exc:  # noqa: BLE001 - recorded; the next phase still runs
        status = "error"
        run.report["errors"].append({"phase": name, "error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc()[-3000:]})
        run.say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
    run.report["phases"][name] = {"status": status, "seconds": round(time.perf_counter() - start, 1),
                                  "ended_at_s": round(run.budget.elapsed(), 1)}
    run.save()


def phase_tests(run: Run) -> None:
    """Phase 1: ``pytest -m cuda``. A failed test, none collected, or a time-out is an error; a
    test module that could not be imported is only recorded (``collection_errors``)."""
    limit = run.budget.until(PHASE_ENDS["tests"], floor=TESTS_FLOOR_S)
    res = run_cuda_tests(run.opts.tests, run.work, limit)
    run.report["tests"] = res
    run.say(f"tests: {res.get('passed')} passed, {res.get('failed')} failed, {res.get('errors')} errors, "
            f"{res.get('skipped')} skipped of {res['collected']} in {res['seconds']} s (exit {res['rc']}; "
            f"{res.get('collection_errors')} modules not importable)")
    if res["timed_out"]:
        raise TimeoutError(f"pytest -m cuda ran past its {limit:.0f} s; see {res['log']}")
    if res["collected"] == 0 or res.get("failed") or res.get("errors"):
        raise RuntimeError(f"pytest -m cuda: {res['collected']} collected, {res.get('failed')} failed, "
                           f"{res.get('errors')} errors (exit {res['rc']}); see {res['log']}")


def phase_bench(run: Run) -> None:
    """Phase 2: latency and peak memory of the benchmark models (the throughput is phase 3's)."""
    opts = run.opts
    deadline = time.time() + run.budget.until(PHASE_ENDS["bench"], floor=BENCH_FLOOR_S)
    run.report["bench"] = {"batch": 1, "runs": opts.bench_runs, "precision": precision_flags(), "rows": []}
    rows = speed_rows(opts.bench_models, opts.bench_sizes, opts.device, opts.bench_runs, deadline, run.say)
    run.report["bench"]["rows"] = rows


def _train_summary(cfg, result: TrainResult, plan: dict[str, int], wall: float) -> dict[str, Any]:
    summary_file = result.run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return {"model": cfg.model.name, "model_overrides": dict(cfg.model.overrides), **plan,
            "step": result.step, "reason": result.reason, "train_seconds": summary.get("train_seconds"),
            "wall_s": round(wall, 1), "images_per_s": result.images_per_s, "best": result.best,
            "batch_size": cfg.train.batch_size, "patch_size": cfg.data.patch_size,
            "checkpoint_stages": cfg.train.checkpoint_stages,
            "amp": cfg.train.amp if cfg.train.device.startswith("cuda") else "off",
            "run_dir": str(result.run_dir)}


def phase_train(run: Run) -> None:
    """Phase 3: measure the throughput, train for the time left, then score and write the weights."""
    opts = run.opts
    base = recipe(opts, run.work)
    throughput = measure_throughput(opts, base, run.budget.for_training())
    run.report["throughput"] = throughput
    run.say(f"throughput: {throughput['images_per_s']} images/s (batch {throughput['batch_size']}, "
            f"patch {throughput['patch_size']}, amp {throughput['amp']})")
    run.save()
    seconds = run.budget.for_training()
    plan = plan_run(throughput, seconds, opts.max_steps)
    run.say(f"train: {plan['iterations']} steps planned in {seconds:.0f} s")
    start = time.perf_counter()
    cfg, result = train_planned(opts, base, plan, seconds)
    run.report["train"] = _train_summary(cfg, result, plan, time.perf_counter() - start)
    run.say(f"train: {result.step} steps, stopped: {result.reason}")
    run.save()
    for name in RUN_FILES:
        if (result.run_dir / name).is_file():
            copy_tail(result.run_dir / name, run.out / name)
    _score_and_write(run, cfg, result)


def _score_and_write(run: Run, cfg, result: TrainResult) -> None:
    """Pick the checkpoint, write its weights to the output folder, and score what was written."""
    device = run.opts.device
    pairs = build_val_pairs(cfg)
    chosen, candidates = best_candidate(result, cfg, pairs, device)
    files, room = weights_room()
    paths = write_weights(load_model(chosen), run.out, MAX_FILE_BYTES, files, room)
    run.report["weights"] = {"checkpoint": str(chosen), "files": [p.name for p in paths],
                             "bytes": sum(p.stat().st_size for p in paths), "dtype": stored_dtype(paths[0])}
    validation: dict[str, Any] = {"pairs": len(pairs), "candidates": candidates,
                                  "trained": score(read_weights(paths), cfg, pairs, device)}
    if run.opts.compare:
        validation["compare"] = score_spec(run.opts.compare, cfg, pairs, device)
    run.report["validation"] = validation
    run.say(f"validation ({len(pairs)} pairs): trained {validation['trained']['psnr']} dB"
            + (f", {run.opts.compare} {validation['compare']['psnr']} dB" if "compare" in validation else ""))


def _finish(run: Run) -> int:
    run.report["out"] = out_files(run.out)
    ran = [p for p in run.report["phases"].values() if p.get("status") != "skipped"]
    ok = not run.report["errors"] and all(p.get("status") == "ok" for p in ran)
    run.report["status"] = "ok" if ok else "failed"
    run.save()
    run.say(f"done: {run.report['status']}, report in {run.out / 'report.json'}")
    return 0 if ok else 1


def join_main(argv: list[str]) -> int:
    """``join FILES... -o weights.safetensors``: one float32 file from the returned weight files."""
    parser = argparse.ArgumentParser(prog="python -m interir.gpurun join", description=join_main.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    path = join_weights(args.files, args.output)
    print(f"wrote {path} ({path.stat().st_size / MiB:.1f} MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["join"]:
        return join_main(argv[1:])
    if argv[:1] == ["prepare"]:
        return prepare_main(argv[1:])
    run = _start(parse_options(argv))
    run.say(f"{run.report['device']['name']}, budget {run.opts.minutes} min, output {run.out}")
    if run.report["data"]["prepared"] is None:
        run.say(f"no prepare.json beside {run.opts.data}: the images were not chosen by "
                "scripts/device_prepare.sh, so the report cannot say what was left out")
    _phase(run, "tests", phase_tests)
    _phase(run, "bench", phase_bench)
    _phase(run, "train", phase_train)
    return _finish(run)
