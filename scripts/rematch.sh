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
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PROCS=${PROCS:-1}
ALL=(interir-small interir-small-xconv deepsn-small nafnet-small)
models=("$@")
[[ ${#models[@]} -eq 0 ]] && models=("${ALL[@]}")

for model in "${models[@]}"; do
  case " ${ALL[*]} " in *" $model "*) ;; *) echo "unknown model '$model'; choose from: ${ALL[*]}" >&2; exit 2 ;; esac
  run=runs/rematch-$model
  if [[ -f $run/checkpoints/last/model.json || -d $run/checkpoints/last ]]; then
    args=("$run" --resume)
  else
    args=(configs/cpu-small.yaml "model.name=$model" "output.name=rematch-$model" output.tensorboard=off
          optim.gain_lr_scale=10)
  fi
  if [[ $PROCS -gt 1 ]]; then
    "$BIN/python" -m torch.distributed.run --standalone --nproc_per_node="$PROCS" -m interir.cli train "${args[@]}"
  else
    "$BIN/interir" train "${args[@]}"
  fi
  "$BIN/python" scripts/ship_default.py "$run" --name "eb-$model" --card "MODEL_CARD_REMATCH.md"
  scripts/reproduce_results.sh "eb-$model"
done
