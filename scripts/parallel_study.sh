#!/usr/bin/env bash
# Train the study's MobileNetV2 configurations side by side on one GPU host with the JAX backend
# (no TensorFlow there), each run an ordinary `python -m model.cnn` command, then pack what came out.
#
#   DATA=/path/chest_xray OUT=/path/results scripts/parallel_study.sh
#
# Every run: from scratch, 20 epochs, Adam 1e-3 with cosine decay, checkpoint on validation AUC, the
# same patient-level validation split (seed 42), external half reported only. Options: EPOCHS, LIMIT
# and SIZE (input size of the 192-px runs) shrink it for a smoke test; DEADLINE (seconds, 0: none)
# stops runs that have not finished by then - leave a minute after the last epoch for the threshold
# and metadata, or finish the checkpoints later with `python -m model.cnn ... --finish`; ONLY (names,
# space-separated) picks runs. ONNX export and the framing test run afterwards on a CPU host.
# Session 4 ran ONLY="scale192 fov192 fov192_seed43 fov192_seed44 fov224" DEADLINE=470 on an H200;
# the folds (fovn192_folds_1..5) are the shipped `fov-neutral` member's recipe, five patient-grouped folds.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
: "${DATA:?set DATA to a Kaggle-layout folder with train/ and external/}" "${OUT:?set OUT to a results folder}"
EPOCHS=${EPOCHS:-20} LIMIT=${LIMIT:-0} SIZE=${SIZE:-192} DEADLINE=${DEADLINE:-0}
RUNS=${RUNS:-runs/study}
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.08}
mkdir -p "$RUNS" "$OUT"

common=(--data "$DATA" --external "$DATA/external" --backbone mobilenetv2 --weights none --epochs "$EPOCHS"
        --learning-rate 1e-3 --lr-schedule cosine --monitor val_auc --patience 6 --limit "$LIMIT")
declare -A study=(
    [scale${SIZE}]="--augment scale --input-size $SIZE"
    [fov${SIZE}]="--augment fov --input-size $SIZE"
    [fov224]="--augment fov --input-size 224"
    [fov${SIZE}_seed43]="--augment fov --input-size $SIZE --seed 43 --split-seed 42"
    [fov${SIZE}_seed44]="--augment fov --input-size $SIZE --seed 44 --split-seed 42"
    [fovn${SIZE}]="--augment fov-neutral --input-size $SIZE"
)
for fold in 1 2 3 4 5; do
    study[fovn${SIZE}_folds_$fold]="--augment fov-neutral --input-size $SIZE --folds 5 --fold $fold"
done

pids=()
for name in "${!study[@]}"; do
    [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]] && continue
    output="$RUNS/$name"
    [[ $name == *_folds_* ]] && output="$RUNS/fovn${SIZE}_folds"
    # shellcheck disable=SC2086  # the options are meant to split
    python3 -m model.cnn "${common[@]}" ${study[$name]} --output "$output" >"$RUNS/$name.log" 2>&1 &
    pids+=($!)
done
watchdog=
if (( DEADLINE > 0 )); then
    ( sleep "$DEADLINE"; echo "deadline of ${DEADLINE}s reached: stopping unfinished runs"; kill "${pids[@]}" 2>/dev/null ) &
    watchdog=$!
fi
wait "${pids[@]}"
[[ -n $watchdog ]] && kill "$watchdog" 2>/dev/null

python3 -c "from pathlib import Path; from model.training import summarise_folds; \
summarise_folds(Path('$RUNS/fovn${SIZE}_folds'), 5)" >/dev/null 2>&1
grep -h -E "^(validation at|external)" "$RUNS"/*.log | head -40
tar -czf "$OUT/study_results.tgz" --exclude='*.keras' "$RUNS"
for name in scale${SIZE} fov${SIZE} fov224 fov${SIZE}_seed43 fov${SIZE}_seed44 fovn${SIZE}; do
    [[ -f $RUNS/$name/best_model.keras ]] && cp "$RUNS/$name/best_model.keras" "$OUT/$name.keras"
done
ls -la "$OUT"
