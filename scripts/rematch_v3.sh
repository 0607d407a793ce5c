#!/usr/bin/env bash
# The core-v3 rematch (issue 25): every model gets the same recipe (configs/cpu-small.yaml with the
# probes' 10x learning rate for zero-initialised gains) and the same training WALL-CLOCK on one core,
# 10 minutes, so the result is a dB-vs-cost curve rather than an equal-steps table.
#
# Equal wall-clock is turned into a step count per model ahead of training, from one measured
# training step (benchmarks/train_step.py, fp32, patch 64, batch 8, one thread, all models in one
# interleaved run, AVX-512 Sapphire Rapids) plus the data pipeline's 46 ms per batch:
#   steps = 600 s / (step + 0.046 s)
# so a busy machine during training slows every run alike instead of cutting some runs short.
# (10 minutes, not more, because this machine was shared with other work while the rematch ran:
# each run took 2-4x its idle time.)
#
#   scripts/rematch_v3.sh                          # train (or resume), ship and score all
#   scripts/rematch_v3.sh nafnet-small             # only these
#   SCORE=0 scripts/rematch_v3.sh ...              # train and ship only
#   DRY_RUN=1 scripts/rematch_v3.sh                # print the commands (scripts/lib/stages.sh)
#
# Runs go to runs/rematch3-<model> and are scored from there (results/eval/rematch3-<model>). The
# InterIR v3 models and deepsn-net-small ship as eb-<model>; the NAFNet points of the curve do not
# (their weights would add 10 MB to the package for a comparison the results files already hold;
# eb-nafnet-small, the core-v2 rematch's 8000-step model, stays shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
SCORE=${SCORE:-1}
export OMP_NUM_THREADS=1
PROCS=1
source scripts/lib/stages.sh
# model -> steps (measured step time in seconds in the comment)
declare -A STEPS=(
  [interir-small-v3]=1111        # 0.494
  [interir-tiny-v3]=1446         # 0.369
  [interir-small-v3-xconv]=1103  # 0.498
  [deepsn-net-small]=2765        # 0.171
  [nafnet-small]=2691            # 0.177
  [nafnet-small-w24]=1824        # 0.283
  [nafnet-small-w32]=1339        # 0.402
)
ORDER=(interir-small-v3 nafnet-small deepsn-net-small interir-small-v3-xconv interir-tiny-v3 nafnet-small-w24 nafnet-small-w32)
models=("$@")
[[ ${#models[@]} -eq 0 ]] && models=("${ORDER[@]}")

for model in "${models[@]}"; do
  steps=${STEPS[$model]:-}
  [[ -n $steps ]] || { echo "unknown model '$model'; choose from: ${ORDER[*]}" >&2; exit 2; }
  dir=runs/rematch3-$model
  stage "$dir" configs/cpu-small.yaml "model.name=$model" "output.name=rematch3-$model" \
    output.tensorboard=off optim.gain_lr_scale=10 "train.iterations=$steps" "train.val_every=$steps" \
    train.threads=1
  if [[ $model != nafnet-* ]]; then
    run "$BIN/python" scripts/ship_default.py "$dir" --name "eb-$model" --card "MODEL_CARD_REMATCH.md"
  fi
  if [[ $SCORE == 1 ]]; then run scripts/reproduce_results.sh "rematch3-$model"; fi
done
