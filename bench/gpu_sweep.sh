#!/usr/bin/env bash
# The shipped recipe's seed sweeps and its variants on a rented GPU box that has Python, torch
# and CUDA but no checkout install, no BUSI copy and no network (the device tool of this
# workplace). Prepare here, in the repository root:
#   mkdir -p .whl .gpu && .venv/bin/qdev data pack --out .gpu/busi-128.npz
#   .venv/bin/pip wheel --no-deps -w .whl . && git rev-parse HEAD > .gpu/REVISION
#   pip download --no-deps --python-version 3.12 ... -d .whl brevitas==0.13.4 dependencies==2.0.1 unfoldNd
# (both folders are ignored; they travel as the call's `carry`), then on the box:
#   bash bench/gpu_sweep.sh probe            # 3 epochs alone, then 8 side by side: seconds per epoch
#   bash bench/gpu_sweep.sh main JOBS SECS   # the sweep below, JOBS at a time, stopped after SECS
# Runs land in /tmp/gpu/runs; $OUT/runs.N.tar hold them (bench/sweep.py --collect) for
# `tar -xf` into the checkout, where `qdev postprocess` / `qdev evaluate` read them against the
# PNG copy (a pack records the same data hash).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu/out}
PY=${PY:-python3}   # the box's interpreter with torch
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$REPO"/.whl/*.whl
export PYTHONPATH=/tmp/site QDEV_BUSI="$REPO/.gpu/busi-128.npz" QDEV_GIT_REVISION="$(cat "$REPO/.gpu/REVISION")"
mkdir -p /tmp/gpu "$OUT" && cd /tmp/gpu   # not the checkout: its qdev/ folder would shadow the wheel
# the shipped recipe (README "Training"), less width, epochs and seed
BASE="--model quant --lambda 0.05 --bits 2..8 --freeze-bits 0.75 --ema 0.995 --dice image --out-range 8 --normal-weight 4 --split grouped --device ${DEVICE:-cuda}"
SWEEP=("$PY" "$REPO/bench/sweep.py" --python "$PY" --runs /tmp/gpu/runs)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, brevitas; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'brevitas', brevitas.__version__)"
epoch_seconds() { for f in /tmp/gpu/runs/"$1"*/train/log.jsonl; do "$PY" -c "
import json,sys; r=[json.loads(x) for x in open(sys.argv[1])]; print(sys.argv[1].split('/')[-3], [x['seconds'] for x in r])" "$f"; done; }
case "${1:?smoke|probe|main}" in
  smoke)  # one epoch of a width-4 net: that the box has what the sweep needs (DEVICE=cpu: here)
    "${SWEEP[@]}" --jobs 1 --collect "$OUT" "smoke-w4 $BASE --width 4 --epochs 1 --seed 0"
    epoch_seconds smoke ;;
  probe)
    "${SWEEP[@]}" --jobs 1 "probe1-w8 $BASE --width 8 --epochs 3 --seed 0"
    epoch_seconds probe1
    specs=(); for s in 0 1 2 3 4 5 6 7; do specs+=("probe8-s$s $BASE --width 8 --epochs 3 --seed $s"); done
    "${SWEEP[@]}" --jobs 8 "${specs[@]}"
    epoch_seconds probe8
    if [ -n "${MPS:-}" ] && command -v nvidia-cuda-mps-control >/dev/null && timeout 20 nvidia-cuda-mps-control -d; then
      specs=(); for s in 0 1 2 3 4 5 6 7; do specs+=("probempsA-s$s $BASE --width 8 --epochs 3 --seed $s"); done
      timeout 150 "${SWEEP[@]}" --jobs 8 "${specs[@]}" || true
      epoch_seconds probemps
      echo quit | timeout 20 nvidia-cuda-mps-control || true
    fi ;;
  main)  # MPS (nvidia-cuda-mps-control -d) lets 16 of these run at the speed of one (probe)
    jobs=${2:?JOBS}; secs=${3:?SECONDS}; epochs=${EPOCHS:-60}
    specs=()
    for s in 0 1 2 3 4 5 6 7; do
      specs+=("gpu-w8-e$epochs-s$s $BASE --width 8 --epochs $epochs --seed $s")     # the shipped recipe, shorter, GPU draws
      specs+=("gpu-w12-e$epochs-s$s $BASE --width 12 --epochs $epochs --seed $s")   # width 12
    done
    "${SWEEP[@]}" --jobs "$jobs" --deadline "$secs" --no-last --collect "$OUT" "${specs[@]}" | tee "$OUT/sweep.md" ;;
esac
