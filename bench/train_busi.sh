#!/usr/bin/env bash
# Float U-Net and QuantU-Net at width $WIDTH (default 8) on the real BUSI leak-free split.
# Recipe: float $FLOAT_EPOCHS epochs; quant $QUANT_EPOCHS epochs initialised from a float
# checkpoint's weights, lambda $LAMBDA, bits 2..8, bit widths by SGD and frozen after
# $FREEZE of the epochs (see training/trainer.py). Every run is evaluated on its test split
# (runs/<name>/evaluate/metrics.json); bench/summarise_train.py tabulates them.
#   bench/train_busi.sh seeds 0 1 2     # per seed: float twin, then quant from that twin
#   bench/train_busi.sh quant 0 1 2     # quant seeds, all from float seed 0 (float-s0 first)
#   bench/train_busi.sh paper           # float on the paper's random split (leak check)
#   bench/train_busi.sh recipes         # width-8 recipe study: flips-only float and fixed W4A4,
#                                       # W4A4 without BN, QuantU-Net from scratch (runs/exp-*)
#   bench/train_busi.sh long 0 1 2      # the from-scratch recipe for $LONG_EPOCHS (150) epochs with
#                                       # a weight EMA (decay $EMA, 0.995) used for selection
#   bench/train_busi.sh normals 4 0     # the long recipe, normal scans' BCE weighted 4x (seed 0)
#   bench/train_busi.sh dice 8 0 1      # the long recipe, per-image Dice, output scale from logits +-8
#   bench/train_busi.sh dicenw 8 4 0    # the same with normal scans' BCE weighted 4x
#   bench/train_busi.sh strongaug 8 4 0 # dicenw under the stronger augmentation (--augment strong)
#   WIDTH=12 bench/train_busi.sh dicenw 8 4 0   # the long recipes take $WIDTH too (runs/exp-quant-w12-*)
#   bench/train_busi.sh range 8 0       # the long recipe, only the output scale from logits +-8
#   bench/train_busi.sh uniform 3 0 1 2  # fixed WbAb (here W3A3) from scratch, the from-scratch
#                                       # recipe's schedule and augmentation: the Pareto baselines
#   bench/train_busi.sh uniformdice 3 8 0  # fixed WbAb under the dice recipe ($LONG_EPOCHS, EMA,
#                                       # per-image Dice, output range 8): the matched baseline
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QDEV:-.venv/bin/qdev}  # e.g. QDEV="/path/.venv/bin/python -m qdev.host.cli" from a frozen worktree
T=${THREADS:-1}
FE=${FLOAT_EPOCHS:-80}
QE=${QUANT_EPOCHS:-40}
LAM=${LAMBDA:-0.25}
FZ=${FREEZE:-0.75}
W=${WIDTH:-8}
SFX=$([ "$W" = 8 ] && echo "" || echo "-w$W")   # width 8 keeps the old run names
QP=${QUANT_PREFIX:-bench-quant$SFX}   # e.g. QUANT_PREFIX=bench-quant-lam005 LAMBDA=0.05
FP=${FLOAT_PREFIX:-bench-float$SFX}
run() {  # name, then qdev train options: train (resumable) and evaluate, unless already evaluated
  local n=$1; shift
  [ -f "runs/$n/evaluate/metrics.json" ] && return 0
  $Q train "$@" --threads "$T" --out "runs/$n" --resume
  $Q evaluate "runs/$n"
}
float_run() {  # name seed split
  run "$1" --model float --width "$W" --epochs "$FE" --seed "$2" --split "$3"
}
quant_run() {  # name seed split float-run
  run "$1" --model quant --width "$W" --epochs "$QE" --seed "$2" --split "$3" --lambda "$LAM" --bits 2..8 \
    --freeze-bits "$FZ" --init-from "runs/$4/train/best.pt"
}
exp_run() {  # name, then qdev train options (the grouped split)
  local n=$1; shift
  run "$n" "$@" --split grouped
}
long_run() {  # name suffix, seed, then extra options: the from-scratch recipe, $LONG_EPOCHS epochs, EMA
  local sfx=$1 s=$2; shift 2
  exp_run "exp-quant-w$W-lam005-scratch-e${LONG_EPOCHS:-150}-ema$sfx-s$s" --model quant --width "$W" \
    --epochs "${LONG_EPOCHS:-150}" --seed "$s" --lambda 0.05 --bits 2..8 --freeze-bits 0.75 --ema "${EMA:-0.995}" "$@"
}
case "${1:-seeds}" in
  seeds)
    shift || true
    for s in ${*:-0 1 2}; do
      float_run "$FP-s$s" "$s" grouped
      quant_run "$QP-s$s" "$s" grouped "$FP-s$s"
    done ;;
  quant)
    shift || true
    float_run "$FP-s0" 0 grouped
    for s in ${*:-0 1 2}; do
      quant_run "$QP-s$s" "$s" grouped "$FP-s0"
    done ;;
  recipes)
    exp_run exp-float-w8-flips-s0 --model float --width 8 --epochs 62 --seed 0 --augment flips
    exp_run exp-w4a4-w8-flips-s0 --model quant --width 8 --epochs 62 --seed 0 --bits 4..4 --init-bits 4 \
      --lambda 0 --freeze-bits 0 --augment flips
    exp_run exp-w4a4-w8-nobn-flips-s0 --model quant --width 8 --epochs 30 --seed 0 --bits 4..4 --init-bits 4 \
      --lambda 0 --freeze-bits 0 --no-bn --augment flips
    for s in 0 1 2; do
      exp_run "exp-quant-w8-lam005-scratch-s$s" --model quant --width 8 --epochs 60 --seed "$s" --lambda 0.05 \
        --bits 2..8 --freeze-bits 0.75
    done ;;
  long)
    shift || true
    for s in ${*:-0 1 2}; do long_run "" "$s"; done ;;
  normals)  # the long recipe with normal scans' BCE weighted $2 times (training/losses.py)
    shift || true
    nw=${1:?weight}; shift || true
    for s in ${*:-0 1 2}; do long_run "-nw$nw" "$s" --normal-weight "$nw"; done ;;
  dice)  # the long recipe with the per-image Dice and the output's scale started at logits +-$2
    shift || true
    r=${1:?range}; shift || true
    for s in ${*:-0 1 2}; do long_run "-idice-or$r" "$s" --dice image --out-range "$r"; done ;;
  dicenw)  # the dice recipe ($2: output range) with normal scans' BCE weighted $3 times
    shift || true
    r=${1:?range}; nw=${2:?weight}; shift 2 || true
    for s in ${*:-0 1 2}; do long_run "-idice-or$r-nw$nw" "$s" --dice image --out-range "$r" --normal-weight "$nw"; done ;;
  strongaug)  # the dicenw recipe ($2: output range, $3: normal weight) under --augment strong
    shift || true
    r=${1:?range}; nw=${2:?weight}; shift 2 || true
    for s in ${*:-0 1 2}; do
      long_run "-idice-or$r-nw$nw-strong" "$s" --dice image --out-range "$r" --normal-weight "$nw" --augment strong
    done ;;
  range)  # the long recipe with only the output's scale started at logits +-$2
    shift || true
    r=${1:?range}; shift || true
    for s in ${*:-0 1 2}; do long_run "-or$r" "$s" --out-range "$r"; done ;;
  uniform)
    shift || true
    b=${1:?bits}; shift || true
    for s in ${*:-0 1 2}; do
      exp_run "exp-w${b}a${b}-w8-scratch-s$s" --model quant --width 8 --epochs 60 --seed "$s" --bits "$b..$b" \
        --init-bits "$b" --lambda 0 --freeze-bits 0
    done ;;
  uniformdice)  # fixed W$2A$2 with every other setting of the dice recipe (output range $3)
    shift || true
    b=${1:?bits}; r=${2:?range}; shift 2 || true
    for s in ${*:-0 1 2}; do
      exp_run "exp-w${b}a${b}-w8-scratch-e${LONG_EPOCHS:-150}-ema-idice-or$r-s$s" --model quant --width 8 \
        --epochs "${LONG_EPOCHS:-150}" --seed "$s" --bits "$b..$b" --init-bits "$b" --lambda 0 --freeze-bits 0 \
        --ema "${EMA:-0.995}" --dice image --out-range "$r"
    done ;;
  paper)
    float_run "$FP-paper-s0" 0 paper ;;
  *) echo "usage: $0 seeds [SEED...] | quant [SEED...] | recipes | long|normals|dice|range ... | uniform BITS [SEED...] | uniformdice BITS RANGE [SEED...] | paper" >&2; exit 2 ;;
esac
