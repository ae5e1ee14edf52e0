#!/usr/bin/env bash
# The shipped model's recipe (documentation/MODEL_CARD.md), in one place for `make model` and the AWS
# training host: two MobileNetV2 members with `--augment fov-neutral` on the same patient-level split,
# one trained from scratch, one fine-tuned in full (`--full-fine-tune`) from a self-supervised
# pre-training (`model.pretrain`) on the training side of that split; then their ensemble (threshold by
# the pooled rule, metadata, ONNX).
#
# Usage: scripts/train_model.sh DATA OUT [model.cnn options for both members, e.g. --weights imagenet]
#   DATA  Kaggle-layout root (train/ is used; the validation split is carved from it by patient)
#   OUT   the pre-trained backbone goes to OUT/ssl, the members to OUT/member_fov_neutral and
#         OUT/member_ssl_fov_neutral, the ensemble to OUT/ensemble
#   With --weights among the options both members start from those weights and the pre-training is skipped.
# Environment: PY (default .venv/bin/python); EXTERNAL (default DATA/external), a folder evaluated
# for the report only, skipped when it does not exist; PRETRAIN_ARGS, options of model.pretrain (its
# --val-fraction and --split-seed must match the members': the trainer refuses a backbone that saw
# its validation patients).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,17p' "$0"; exit 2; }
DATA=$1 OUT=$2
shift 2
PY=${PY:-.venv/bin/python}
EXTERNAL=${EXTERNAL:-$DATA/external}
report=()
[ ! -d "$EXTERNAL" ] || report=(--external "$EXTERNAL")
# Later options win, so the caller's (e.g. --weights imagenet) override these.
member=(--data "$DATA" "${report[@]}" --backbone mobilenetv2 --weights none --input-size 192 --epochs 20
        --learning-rate 1e-3 --lr-schedule cosine --monitor val_auc --patience 6 --augment fov-neutral)
backbone=$OUT/ssl/mobilenetv2-192.weights.h5
# shellcheck disable=SC2086 # PRETRAIN_ARGS is a list of options
case " $* " in
  *" --weights "*) ;;
  *) "$PY" -m model.pretrain --data "$DATA" --output "$backbone" --input-size 192 --epochs 10 ${PRETRAIN_ARGS:-} ;;
esac
"$PY" -m model.cnn "${member[@]}" --output "$OUT/member_fov_neutral" "$@"
# Early stopping is off for this member (patience 20 = the whole cosine schedule): started from the
# pre-trained backbone, its validation AUC peaks early and noisily, and patience 6 stopped it at epoch 11.
"$PY" -m model.cnn "${member[@]}" --weights "$backbone" --full-fine-tune --patience 20 \
  --output "$OUT/member_ssl_fov_neutral" "$@"
"$PY" -m model.ensemble --model "$OUT/member_fov_neutral/best_model.keras" \
  --model "$OUT/member_ssl_fov_neutral/best_model.keras" --data "$DATA" "${report[@]}" --output "$OUT/ensemble/best_model.keras"
