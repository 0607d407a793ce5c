#!/usr/bin/env bash
# Prepare, on this machine (it has the package index and the shared data), what
# scripts/device_run.sh needs on a GPU machine that has neither (docs/gpu.md):
#
#   bash scripts/device_prepare.sh [TRAIN_IMAGES]   # default: the shared training folder
#
# 1. .whl/  wheels of the packages interir needs that the GPU machine's image lacks (pydantic and
#           its parts, omegaconf), for its Python 3.12 on x86-64, at this venv's versions;
# 2. .gpu-data/train/  a copy of the clean training images (bsds432/, photos/);
# 3. the size of what a device call sends (tracked and untracked files plus both folders), which
#    must stay under 64 MiB.
# Both folders are ignored by git; the device call names them in `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SRC=${1:-../shared/data/train}
NEEDED="pydantic pydantic-core annotated-types typing-inspection typing-extensions omegaconf"
LIMIT_MIB=64

mkdir -p .whl
pins=()
for name in $NEEDED; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  rm -f .whl/"${name//-/_}"-*.whl   # one version of each, or the install on the device stops
  pins+=("$name==$version")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"
echo "wheels: $(ls .whl | tr '\n' ' ')"

for part in bsds432 photos; do
  test -d "$SRC/$part" || { echo "no $SRC/$part: pass the training images folder" >&2; exit 1; }
done
mkdir -p .gpu-data/train
cp -r "$SRC/bsds432" "$SRC/photos" .gpu-data/train/
echo "training images: $(find .gpu-data/train -type f | wc -l) files in .gpu-data/train"

sent=$( { git ls-files -z --cached --others --exclude-standard; find .whl .gpu-data -type f -print0; } \
        | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "a device call sends about $((sent / 1048576)) MiB (limit $LIMIT_MIB MiB)"
if (( sent > LIMIT_MIB * 1048576 )); then
  echo "too large: leave photos/ out (rm -r .gpu-data/train/photos) or move big untracked files" >&2
  exit 1
fi
