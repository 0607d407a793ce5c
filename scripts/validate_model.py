"""Score models on a training config's validation pairs (the ones its run selects by).

    .venv/bin/python scripts/validate_model.py configs/cpu-default-stage4.yaml -m default \
        -m runs/cpu-default-stage4/checkpoints/best

Lets a recipe stage be compared with the weights it started from on the same footing: a run
only validates its own steps. Models are given as for ``interir eval -m``. ``--json FILE`` also
writes ``[{"spec", "label", "psnr", "ssim", "sets": {name: psnr}}, ...]`` in the order of ``-m`` (scripts read it to
decide whether a run ships, see scripts/train_default_v2.sh).
"""

import argparse
import json
from pathlib import Path

import torch

from interir.config import load_config
from interir.engine.evaluate import EvalOptions, evaluate
from interir.loading import resolve_model
from interir.data.validation_pairs import build_val_pairs
from interir.engine.validation import per_set_text, validation_datasets, validation_scores
from interir.metrics.image import MetricSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training config whose data.val section defines the pairs")
    parser.add_argument("-m", "--model", action="append", required=True, help="model spec (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the scores here, in the order of -m")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    pairs = build_val_pairs(cfg)
    print(f"{len(pairs)} validation pairs of {args.config}")
    resolved = [resolve_model(spec, "cpu") for spec in args.model]
    models = dict(resolved)
    convention = cfg.data.val_sets[0]
    settings = MetricSettings(y_channel=convention.y_channel, crop_border=convention.crop_border)
    report = evaluate(models, validation_datasets(pairs),
                      EvalOptions(settings=settings, device="cpu", log_every=0))
    results = {label: validation_scores(report, label) for label in models}
    for label, res in results.items():
        print(f"{label}: PSNR {res['psnr']:.3f} dB  SSIM {res['ssim']:.4f}{per_set_text(res, ssim=True)}  "
              f"({report.seconds[label]:.1f} s)")
    if args.json:
        names = [v.name or f"set{k}" for k, v in enumerate(cfg.data.val_sets)]
        scores = [{"spec": spec, "label": label, "psnr": results[label]["psnr"], "ssim": results[label]["ssim"],
                   "sets": {names[k]: v["psnr"] for k, v in results[label]["sets"].items()}}
                  for spec, (label, _) in zip(args.model, resolved)]
        args.json.write_text(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
