#!/usr/bin/env bash
# Prepare, on this machine (it has the package index and the shared data), what
# scripts/device_run.sh needs on a GPU machine that has neither (docs/gpu.md):
#
#   bash scripts/device_prepare.sh [TRAIN_IMAGES]   # default: ../shared/data/train
#
# It fills .whl/ (wheels of the packages the GPU image lacks) and .gpu-data/train/ (the clean
# training images the run's recipe reads) so that the whole device call, repository included,
# stays under 56 MiB of the 64 MiB it may send: the validation images always, then a fixed seeded
# selection of the training images until that size. .gpu-data/prepare.json records what was
# carried and what was left out; the device run copies it into its report (data.prepared).
# Both folders are ignored by git; the device call names them in `carry`. The work is done by
# `python -m interir.gpurun prepare` (options: --out, --wheels, --offline; --help lists them).
# PYTHON picks the interpreter (default .venv/bin/python); this checkout's src/ is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m interir.gpurun prepare "$@"
