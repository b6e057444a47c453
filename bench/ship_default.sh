#!/usr/bin/env bash
# Ship the default model: copy the trained/evaluated/exported run (without last.pt) into
# models/quantunet-w8/ and sign a bundle per compiled board into bitstreams/<board>/quantunet-w8/
# with the committed DEVELOPMENT key.
#   Usage: bench/ship_default.sh [RUN [OTHER ...]]   (OTHER: the other runs RUN was picked from,
#   so that the margin is corrected for how many were compared)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/bench-quant-s0}
DST=models/quantunet-w8
# another network ships only if it is the best of its pool and beats the default on validation by the
# margin for that pool (bench/select_default.py);
# the same network (a new mask rule, a new export) re-ships without the check; FORCE=1 skips it
if [ -z "${FORCE:-}" ] && [ -f "$DST/train/best.pt" ] && ! cmp -s "$RUN/train/best.pt" "$DST/train/best.pt"; then
  if ! .venv/bin/python bench/select_default.py --default "$DST" --check "$RUN" "${@:2}"; then
    echo "ship_default: $RUN is not the best of its pool or does not beat $DST on validation by its margin; nothing shipped (FORCE=1 ships it anyway)" >&2
    exit 2
  fi
fi
rm -rf "$DST"; mkdir -p "$DST/train" "$DST/evaluate" "$DST/export"
cp "$RUN/manifest.json" "$DST/"
cp "$RUN"/train/{best.pt,log.jsonl,split.json,fig1_layer_bits.png,fig2_acc_bits.png,fig3_bit_vs_seg.png} "$DST/train/"
cp "$RUN"/evaluate/metrics.json "$DST/evaluate/"
if [ -f "$RUN/postprocess/rule.json" ]; then mkdir -p "$DST/postprocess"; cp "$RUN/postprocess/rule.json" "$DST/postprocess/"; fi
cp "$RUN"/export/{model.qonnx.onnx,golden_in.npy,golden_out.npy,golden_codes.npy,verify.json} "$DST/export/"
for b in KV260 ZCU104 Ultra96-V2 Pynq-Z2; do
  if [ -f "$RUN/compile/$b/summary.json" ]; then
    .venv/bin/qdev bundle create "$RUN" --board "$b" --key keys/dev/qdev-dev.key --model-name quantunet-w8 \
      --out "bitstreams/$b/quantunet-w8"
    .venv/bin/qdev bundle verify "bitstreams/$b/quantunet-w8"
  fi
done
