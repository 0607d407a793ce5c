#!/usr/bin/env bash
# Regenerate the README's result tables: one `interir eval` per method on CBSD68-MDIR (RGB) and on
# Rain100H + SOTS-indoor-40 (Y), then one combined table (results/comparison.md).
#
#   scripts/reproduce_results.sh                      # every method below
#   scripts/reproduce_results.sh default classical    # only these (the others' reports are reused)
#   scripts/reproduce_results.sh --report             # only rebuild results/comparison.md
#
# Methods and the runs they read (train them first, see docs/recipes.md and docs/training.md):
#   default              the embedded model (scripts/train_default.sh: stage 8 since 2026-12-07)
#   default-v1           the default of stages 1-5 (the embedded model until stage 8 replaced it)
#   default-real         stage 7 (issue 26: real rain pairs, haze on real depth), shipped under its own name
#   default-rain         the shipped default-rain (scripts/train_default.sh: stage 6)
#   default-stage1       runs/cpu-default                (its stage 1: configs/cpu-default.yaml)
#   default-stage2       runs/cpu-default-stage2         (its stage 2: configs/cpu-default-stage2.yaml)
#   default-stage3       runs/cpu-default-stage3         (its stage 3: configs/cpu-default-stage3.yaml)
#   default-stage4       runs/cpu-default-stage4         (its stage 4: configs/cpu-default-stage4.yaml)
#   stage4-window        runs/cpu-default-stage4-window  (stage 4 with model.overrides.pool_window=192)
#   stage5-window        runs/cpu-default-stage5-window  (stage 5's windowed twin, see its config)
#   classical            classical-dcp, classical-nlm, classical-dcp+nlm (no learning)
#   interir-small        runs/default-small          (configs/cpu-small.yaml)
#   deepsn-small         runs/deepsn-small           (same config, model.name=deepsn-small)
#   interir-small-xconv  runs/interir-small-xconv    (same config, model.name=interir-small-xconv)
#   nafnet-small         runs/nafnet-small           (same config, model.name=nafnet-small)
#   (the four rows above are the v1 networks, before core v2)
#   eb-interir-small, eb-interir-small-xconv, eb-deepsn-small, eb-nafnet-small
#                        the shipped weights of the core-v2 rematch (scripts/rematch.sh): no run needed
#   rematch3-MODEL       runs/rematch3-MODEL, the core-v3 rematch at equal wall-clock (scripts/rematch_v3.sh)
# One thread per evaluation (OMP_NUM_THREADS=1) keeps the timings comparable; set THREADS to change.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data}
SUITE=results/cbsd68-mdir
export OMP_NUM_THREADS=${THREADS:-1}

REMATCH=(eb-interir-small eb-interir-small-xconv eb-deepsn-small eb-nafnet-small)
ALL=(default default-v1 default-real default-rain default-stage1 default-stage2 default-stage3 default-stage4 stage4-window stage5-window classical interir-small deepsn-small interir-small-xconv nafnet-small "${REMATCH[@]}")
methods=("$@")
report_only=0
if [[ ${#methods[@]} -eq 1 && ${methods[0]} == --report ]]; then report_only=1; methods=(); fi
[[ ${#methods[@]} -eq 0 && $report_only -eq 0 ]] && methods=("${ALL[@]}")

models_of() {
  case "$1" in
    default|default-v1|default-real|default-rain) echo "-m $1" ;;
    default-stage1) echo "-m default-stage1=runs/cpu-default/checkpoints/best" ;;
    default-stage2) echo "-m default-stage2=runs/cpu-default-stage2/checkpoints/best" ;;
    default-stage3) echo "-m default-stage3=runs/cpu-default-stage3/checkpoints/best" ;;
    stage4-window) echo "-m stage4-window=runs/cpu-default-stage4-window/checkpoints/best" ;;
    default-stage4) echo "-m default-stage4=runs/cpu-default-stage4/checkpoints/best" ;;
    stage5-window) echo "-m stage5-window=runs/cpu-default-stage5-window/checkpoints/best" ;;
    classical) echo "-m classical-dcp -m classical-nlm -m classical-dcp+nlm" ;;
    interir-small) echo "-m interir-small=runs/default-small" ;;
    deepsn-small|interir-small-xconv|nafnet-small) echo "-m $1=runs/$1" ;;
    eb-*) echo "-m $1" ;;
    rematch3-*) echo "-m ${1#rematch3-}=runs/$1" ;;
    *) echo "unknown method '$1'; choose from: ${ALL[*]}" >&2; exit 2 ;;
  esac
}

if [[ ! -f $SUITE/manifest.json ]]; then
  "$BIN/interir" synth "$DATA/eval/CBSD68/clean" "$SUITE" --seed 2025 --quiet
fi
for method in "${methods[@]}"; do
  models=$(models_of "$method")
  # shellcheck disable=SC2086
  "$BIN/interir" eval "$SUITE" $models --device cpu --title "CBSD68-MDIR (seed 2025)" \
      --out "results/eval/$method/mdir" --overwrite > /dev/null
  # shellcheck disable=SC2086
  "$BIN/interir" eval "$DATA/eval/Rain100H" "$DATA/eval/SOTS_indoor_40" $models --device cpu --y-channel \
      --title "Rain100H and SOTS-indoor (40-image subset)" --out "results/eval/$method/real" --overwrite > /dev/null
  echo "scored $method: results/eval/$method/{mdir,real}"
done

reports=()
for method in default default-v1 default-real default-rain stage5-window default-stage4 stage4-window default-stage3 default-stage2 default-stage1 "${REMATCH[@]}" interir-small interir-small-xconv deepsn-small nafnet-small classical; do
  for part in mdir real; do
    [[ -f results/eval/$method/$part/summary.json ]] && reports+=("results/eval/$method/$part")
  done
done
check=()
if [[ -f results/eval/default/mdir/summary.json && -f results/eval/classical/mdir/summary.json ]]; then
  check=(--check default --rivals Input,classical-dcp,classical-nlm)
fi
"$BIN/interir" report "${reports[@]}" --title "All methods (same test images)" "${check[@]}" \
    -o results/comparison.md > /dev/null
echo "wrote results/comparison.md"
