#!/usr/bin/env bash
# One prepared run on a lent GPU machine (docs/gpu.md): CUDA tests, latency/memory table, a timed
# training run, validation scores; results (report.json, weights, config, logs) go to $OUT.
#
#   bash scripts/device_run.sh                      # GPU: 8-minute budget, trains `interir`
#   bash scripts/device_run.sh --minutes 5 --model interir --model-opt stage_update=add
#   bash scripts/device_run.sh --device cpu --minutes 1 --model interir-tiny   # CPU dry run
#
# Run it from anywhere; it works in the repository root. Before calling it on the device tool,
# run scripts/device_prepare.sh here (wheels in .whl/, training images in .gpu-data/train) and
# name .whl and .gpu-data in the call's carry. Options go to `python -m interir.gpurun`
# (--help lists them). PYTHON picks the interpreter (default python3).
#
# It installs the carried wheels (packages the device image lacks) and interir itself from this
# working tree into a temporary site with pip, without network; if pip cannot build interir
# there, it runs interir from src/ instead (recorded as install=source in the report).
set -euo pipefail
STARTED_AT=$(date +%s.%N)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
SITE=$(mktemp -d "${TMPDIR:-/tmp}/interir-site.XXXXXX")
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/interir-build.XXXXXX")
trap 'rm -rf "$SITE" "$BUILD"' EXIT
PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check)

# The wheels are built for the GPU machine's Python; elsewhere (this repository's venv) the
# packages are installed already and pip refuses them: go on without.
if compgen -G ".whl/*.whl" >/dev/null; then
  "${PIP[@]}" --upgrade --target "$SITE" .whl/*.whl 2>"$BUILD/wheels.log" \
    || echo "device_run.sh: the wheels in .whl/ do not install here ($(tail -n 1 "$BUILD/wheels.log")); using the installed packages" >&2
fi
# Build from a copy, so that no build/ or egg-info is left in the working tree.
cp -rL pyproject.toml README.md src "$BUILD/"
if "${PIP[@]}" --no-build-isolation --target "$SITE" "$BUILD" 2>"$BUILD/pip.log"; then
  INSTALL=pip
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "device_run.sh: pip could not install interir (tail of its log below); running from src/" >&2
  tail -n 5 "$BUILD/pip.log" >&2
  INSTALL=source
  export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -m interir.gpurun --started-at "$STARTED_AT" --install "$INSTALL" "$@"
