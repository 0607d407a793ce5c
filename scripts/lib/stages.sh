# Stage/resume logic shared by the training scripts (train_default.sh, train_default_v2.sh,
# rematch.sh, rematch_v3.sh). Source it after `cd` to the repository root:
#
#   source "$(dirname "$0")/lib/stages.sh"
#
# Settings (environment or the sourcing script):
#   BIN      folder of the interir and python executables (default .venv/bin)
#   PROCS    training processes: 1 runs `interir train`, more run torchrun (default 1)
#   MINUTES  caps this sitting's training (--max-minutes; the next sitting resumes), default none
#   DRY_RUN  when set, print every command instead of running it (check a script without training)
#
# Functions:
#   finished RUN              true when RUN/summary.json says the run completed
#   run CMD ARGS...           run a command (print it under DRY_RUN)
#   train ARGS...             `interir train ARGS` on PROCS processes, capped by MINUTES
#   stage RUN FRESH_ARGS...   RUN finished: skip it; RUN/checkpoints/last exists: resume it
#                             (`interir train RUN --resume`, the run folder's own config); else
#                             start it with `interir train FRESH_ARGS`. Exits 3 when RUN stopped
#                             before its end, so that no later stage builds on an unfinished one.

BIN=${BIN:-.venv/bin}
PROCS=${PROCS:-1}
MINUTES=${MINUTES:-}
DRY_RUN=${DRY_RUN:-}

finished() { [[ -f $1/summary.json ]] && grep -q '"reason": "completed"' "$1/summary.json"; }

run() {
  if [[ -n $DRY_RUN ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

train() {
  local cap=()
  [[ -n $MINUTES ]] && cap=(--max-minutes "$MINUTES")
  if [[ $PROCS -gt 1 ]]; then
    run "$BIN/python" -m torch.distributed.run --standalone --nproc_per_node="$PROCS" -m interir.cli train "$@" "${cap[@]}"
  else
    run "$BIN/interir" train "$@" "${cap[@]}"
  fi
}

stage() {
  local run_dir=$1; shift
  if finished "$run_dir"; then
    echo "$run_dir: already finished"
    return 0
  elif [[ -d $run_dir/checkpoints/last ]]; then
    train "$run_dir" --resume
  else
    train "$@"
  fi
  [[ -n $DRY_RUN ]] || finished "$run_dir" || {
    echo "$run_dir: stopped before the end; run this script again to resume" >&2
    exit 3
  }
}
