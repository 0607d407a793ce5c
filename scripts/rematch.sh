#!/usr/bin/env bash
# The equal-budget rematch (core v2): the cpu-small recipe, 8000 steps, same data, patches, batch
# and seed, for each model below; then ship each run as a named pretrained model and score it.
# Every model gets the same recipe change the probes chose: a 10x learning rate for the
# zero-initialised gains (optim.gain_lr_scale=10; NAFNet's beta/gamma are such gains too).
#
#   scripts/rematch.sh                                  # train (or resume), ship and score all four
#   scripts/rematch.sh nafnet-small deepsn-small        # only these
#   PROCS=2 scripts/rematch.sh interir-small            # one run on both cores (torchrun, gloo)
#
# Runs go to runs/rematch-<model>; the shipped names are eb-<model> (src/interir/weights/), so
# anyone can re-score the table without training: `interir eval SUITE -m eb-interir-small ...`
# (scripts/reproduce_results.sh eb-interir-small does exactly that).
# Training one of the InterIR models takes about 2 h on one core of this 2-core machine
# (nafnet-small about 1 h); PROCS=2 runs one model about 1.5x faster on both cores.
# A finished run is not trained again, a stopped one resumes (scripts/lib/stages.sh; DRY_RUN=1
# prints the commands instead of running them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/stages.sh
ALL=(interir-small interir-small-xconv deepsn-small nafnet-small)
models=("$@")
[[ ${#models[@]} -eq 0 ]] && models=("${ALL[@]}")

for model in "${models[@]}"; do
  case " ${ALL[*]} " in *" $model "*) ;; *) echo "unknown model '$model'; choose from: ${ALL[*]}" >&2; exit 2 ;; esac
  dir=runs/rematch-$model
  stage "$dir" configs/cpu-small.yaml "model.name=$model" "output.name=rematch-$model" \
    output.tensorboard=off optim.gain_lr_scale=10
  run "$BIN/python" scripts/ship_default.py "$dir" --name "eb-$model" --card "MODEL_CARD_REMATCH.md"
  run scripts/reproduce_results.sh "eb-$model"
done
