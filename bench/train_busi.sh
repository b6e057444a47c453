#!/usr/bin/env bash
# Float and QuantU-Net at the default width (8) on the real BUSI leak-free split, 3 seeds, plus
# one quant run on the paper's random split. Each quant run starts from its float twin's
# best checkpoint. Results: runs/bench-*/evaluate/metrics.json, summarised by
# `.venv/bin/python bench/summarise_train.py`.
# Usage: bench/train_busi.sh [EPOCHS] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-80}; shift || true
SEEDS=${*:-0 1 2}
Q=.venv/bin/qdev
for s in $SEEDS; do
  [ -f runs/bench-float-s$s/evaluate/metrics.json ] || {
    $Q train --model float --width 8 --epochs "$EPOCHS" --seed "$s" --out runs/bench-float-s$s --resume
    $Q evaluate runs/bench-float-s$s; }
  [ -f runs/bench-quant-s$s/evaluate/metrics.json ] || {
    $Q train --model quant --width 8 --epochs "$EPOCHS" --seed "$s" --init-from runs/bench-float-s$s/train/best.pt \
      --out runs/bench-quant-s$s --resume
    $Q evaluate runs/bench-quant-s$s; }
done
[ -f runs/bench-float-paper-s0/evaluate/metrics.json ] || {
  $Q train --model float --width 8 --epochs "$EPOCHS" --split paper --out runs/bench-float-paper-s0 --resume
  $Q evaluate runs/bench-float-paper-s0; }
[ -f runs/bench-quant-paper-s0/evaluate/metrics.json ] || {
  $Q train --model quant --width 8 --epochs "$EPOCHS" --split paper --init-from runs/bench-float-paper-s0/train/best.pt \
    --out runs/bench-quant-paper-s0 --resume
  $Q evaluate runs/bench-quant-paper-s0; }
