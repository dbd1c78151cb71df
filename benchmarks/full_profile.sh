#!/usr/bin/env bash
# The full profile on a GPU (issue 17): train the whole zoo, then execute every chapter, then
# run the tests, writing timings and each chapter's printed figures under $OUT.
#
# Usage (one stage per device command, so that none outlasts the 10-minute limit):
#   OUT=/tmp/out bash benchmarks/full_profile.sh train     # every zoo recipe, full profile
#   OUT=/tmp/out bash benchmarks/full_profile.sh chapters  # execute each chapter (trained zoo)
#   OUT=/tmp/out bash benchmarks/full_profile.sh tests     # the unit tests on CUDA
#   OUT=/tmp/out bash benchmarks/full_profile.sh quick     # the quick profile on the same GPU
#
# Rehearse on a CPU in minutes by shrinking the budgets (the script itself is unchanged):
#   COURSEPKG_PROFILE_OVERRIDES="train_subset=512,epochs=1,adv_epochs=1,eval_subset=32" \
#   COURSEPKG_DEVICE=cpu OUT=/tmp/out bash benchmarks/full_profile.sh train
#
# The GPU machine has PyTorch but no network: the data (Debian's dataset-fashion-mnist files)
# and any missing Python package (wheels) travel with the working tree; see
# /work/.library/device/README.md.  COURSEPKG_DATA_DIR points at the data; COURSEPKG_CACHE
# keeps the trained zoo between stages only while the machine stays warm, so run the stages
# back to back (or carry the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to a folder for the results}"
mkdir -p "$OUT"
export COURSEPKG_PROFILE="${COURSEPKG_PROFILE:-full}"
export COURSEPKG_CACHE="${COURSEPKG_CACHE:-$PWD/_build/full-cache}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

describe_machine() {
  "$PY" - <<'PY'
import platform, torch
from coursepkg.config import device, profile
dev = device()
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
print(f"device {dev} ({name}); torch {torch.__version__}; profile {profile().name}")
PY
}

stage="${1:-}"
case "$stage" in
  train)
    describe_machine | tee "$OUT/machine.txt"
    start=$(date +%s)
    "$PY" -m coursepkg.zoo --json "$OUT/zoo_${COURSEPKG_PROFILE}.json" 2>"$OUT/train.err" \
      | tee "$OUT/train.txt"
    echo "zoo: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.txt"
    ;;
  chapters|quick)
    if [ "$stage" = quick ]; then export COURSEPKG_PROFILE=quick; fi
    describe_machine | tee "$OUT/machine.txt"
    mkdir -p "$OUT/executed"
    : >"$OUT/chapters_${COURSEPKG_PROFILE}.txt"
    for nb in book/[0-9][0-9]_*.ipynb; do
      start=$(date +%s)
      status=ok
      "$PY" -m jupyter nbconvert --to notebook --execute \
        --ExecutePreprocessor.timeout=1200 --output-dir "$OUT/executed" "$nb" \
        >/dev/null 2>"$OUT/executed/$(basename "$nb" .ipynb).err" || status=failed
      seconds=$(( $(date +%s) - start ))
      echo "$(basename "$nb" .ipynb) $status $seconds s" | tee -a "$OUT/chapters_${COURSEPKG_PROFILE}.txt"
    done
    ;;
  tests)
    describe_machine | tee "$OUT/machine.txt"
    start=$(date +%s)
    "$PY" -m pytest -q -x tests --ignore=tests/test_browser.py -p no:cacheprovider \
      2>&1 | tail -40 | tee "$OUT/tests.txt"
    echo "tests: $(( $(date +%s) - start )) s" | tee -a "$OUT/tests.txt"
    ;;
  *)
    echo "usage: OUT=folder bash benchmarks/full_profile.sh train|chapters|tests|quick" >&2
    exit 2
    ;;
esac
