#!/usr/bin/env bash
# The shipped model's recipe (documentation/MODEL_CARD.md), in one place for `make model` and the AWS
# training host: a self-supervised pre-training (`model.pretrain`, 20 epochs) of a MobileNetV2 on the
# training side of the patient-level split, then 15 more epochs from it (`--init`, a fresh cosine
# schedule from 5e-4); the longer backbone fine-tuned in full (`--full-fine-tune`) with
# `--augment fov-neutral` (seed 43), the 20-epoch one with `--augment fov-margin` (seed 42), both on
# the split of seed 42; then the two members' ensemble (threshold by the pooled rule, metadata, ONNX)
# and its atypicality statistics (`model.atypicality`: the warning for films unlike the training films).
#
# Usage: scripts/train_model.sh DATA OUT [model.cnn options for both members, e.g. --weights imagenet]
#   DATA  Kaggle-layout root (train/ is used; the validation split is carved from it by patient)
#   OUT   the pre-trained backbones go to OUT/ssl (epochs20, epochs35), the members to
#         OUT/member_fov_neutral and OUT/member_fov_margin, the ensemble to OUT/model
#   With --weights among the options both members start from those weights and the pre-training is skipped.
# Environment: PY (default .venv/bin/python); EXTERNAL (default DATA/external), a folder evaluated
# for the report only, skipped when it does not exist; PRETRAIN_ARGS, options of both model.pretrain
# runs (their --val-fraction and --split-seed must match the model's: the trainer refuses a backbone
# that saw its validation patients).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,18p' "$0"; exit 2; }
DATA=$1 OUT=$2
shift 2
PY=${PY:-.venv/bin/python}
EXTERNAL=${EXTERNAL:-$DATA/external}
report=()
[ ! -d "$EXTERNAL" ] || report=(--external "$EXTERNAL")
short=$OUT/ssl/epochs20.weights.h5 long=$OUT/ssl/epochs35.weights.h5
# shellcheck disable=SC2086 # PRETRAIN_ARGS is a list of options
case " $* " in
  *" --weights "*) ;;
  *) "$PY" -m model.pretrain --data "$DATA" --output "$short" --input-size 192 --epochs 20 ${PRETRAIN_ARGS:-}
     "$PY" -m model.pretrain --data "$DATA" --output "$long" --init "$short" --input-size 192 --epochs 15 \
       --learning-rate 5e-4 ${PRETRAIN_ARGS:-} ;;
esac
# Later options win, so the caller's (e.g. --weights imagenet) override these. Early stopping is off
# (patience 20 = the whole cosine schedule): from a pre-trained start the validation AUC peaks early
# and noisily, and patience 6 stopped a run at epoch 11 (session 8).
member=(--data "$DATA" "${report[@]}" --backbone mobilenetv2 --full-fine-tune --input-size 192
        --epochs 20 --learning-rate 1e-3 --lr-schedule cosine --monitor val_auc --patience 20)
"$PY" -m model.cnn "${member[@]}" --weights "$long" --augment fov-neutral --seed 43 --split-seed 42 \
  --output "$OUT/member_fov_neutral" "$@"
"$PY" -m model.cnn "${member[@]}" --weights "$short" --augment fov-margin --output "$OUT/member_fov_margin" "$@"
"$PY" -m model.ensemble --model "$OUT/member_fov_neutral/best_model.keras" \
  --model "$OUT/member_fov_margin/best_model.keras" --data "$DATA" "${report[@]}" --output "$OUT/model/best_model.keras"
"$PY" -m model.atypicality --model "$OUT/model/best_model.keras" --data "$DATA" "${report[@]}"
