#!/usr/bin/env bash
# Fetch the latest model (best_model.keras + metadata) from S3 onto an API host; fall back to the
# model shipped in the repository when the bucket has none yet. Run at boot and by
# pneumonia-model-reload.service (which then restarts the API).
set -euo pipefail
# shellcheck source=/dev/null
source /etc/pneumonia/host.env
DEST=/var/lib/pneumonia/models
FILES="best_model.keras best_model.json best_model.onnx best_model.atypicality.npz"  # the ONNX export is the API's fast engine

copy_from() {  # copy_from DIR: the model files present in DIR
  for f in $FILES; do [ ! -f "$1/$f" ] || cp "$1/$f" "$DEST/$f"; done
}

if [ -n "${PROVISION_MODEL_DIR:-}" ]; then  # rehearsal switch (see provision.sh): a local model, no S3
  copy_from "$PROVISION_MODEL_DIR"
  echo "model copied from $PROVISION_MODEL_DIR"
elif aws s3 sync --region "$AWS_REGION" --delete "s3://$MODEL_BUCKET/models/latest/" "$DEST/incoming/" &&
     [ -f "$DEST/incoming/best_model.keras" ] && [ -f "$DEST/incoming/best_model.json" ]; then
  rm -f "$DEST/best_model.onnx" "$DEST/best_model.atypicality.npz"  # an old export must not outlive its model
  copy_from "$DEST/incoming"
  echo "model synced from s3://$MODEL_BUCKET/models/latest/"
elif [ ! -f "$DEST/best_model.keras" ]; then
  copy_from /opt/pneumonia/models
  echo "no model in S3 yet: using the model shipped in the repository"
fi
chown -R pneumonia:pneumonia "$DEST"
