#!/usr/bin/env bash
# The shipped model's recipe (documentation/MODEL_CARD.md), in one place for `make model` and the AWS
# training host: two MobileNetV2 members (`--augment scale` and `--augment fov-neutral`) on the same
# patient-level split, then their ensemble (threshold by the pooled rule, metadata, ONNX).
#
# Usage: scripts/train_model.sh DATA OUT [model.cnn options for both members, e.g. --weights imagenet]
#   DATA  Kaggle-layout root (train/ is used; the validation split is carved from it by patient)
#   OUT   members go to OUT/member_scale and OUT/member_fov_neutral, the ensemble to OUT/ensemble
# Environment: PY (default .venv/bin/python); EXTERNAL (default DATA/external), a folder evaluated
# for the report only, skipped when it does not exist.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
DATA=$1 OUT=$2
shift 2
PY=${PY:-.venv/bin/python}
EXTERNAL=${EXTERNAL:-$DATA/external}
report=()
[ ! -d "$EXTERNAL" ] || report=(--external "$EXTERNAL")
# Later options win, so the caller's (e.g. --weights imagenet) override these.
member=(--data "$DATA" "${report[@]}" --backbone mobilenetv2 --weights none --input-size 192 --epochs 20
        --learning-rate 1e-3 --lr-schedule cosine --monitor val_auc --patience 6)
"$PY" -m model.cnn "${member[@]}" --augment scale --output "$OUT/member_scale" "$@"
"$PY" -m model.cnn "${member[@]}" --augment fov-neutral --output "$OUT/member_fov_neutral" "$@"
"$PY" -m model.ensemble --model "$OUT/member_scale/best_model.keras" --model "$OUT/member_fov_neutral/best_model.keras" \
  --data "$DATA" "${report[@]}" --output "$OUT/ensemble/best_model.keras"
