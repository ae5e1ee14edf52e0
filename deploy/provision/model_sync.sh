#!/usr/bin/env bash
# Fetch the latest model (best_model.keras + metadata) from S3 onto an API host; fall back to the
# model shipped in the repository when the bucket has none yet. Run at boot and by
# pneumonia-model-reload.service (which then restarts the API).
set -euo pipefail
# shellcheck source=/dev/null
source /etc/pneumonia/host.env
DEST=/var/lib/pneumonia/models
if aws s3 cp --region "$AWS_REGION" "s3://$MODEL_BUCKET/models/latest/best_model.json" "$DEST/best_model.json.new" &&
   aws s3 cp --region "$AWS_REGION" "s3://$MODEL_BUCKET/models/latest/best_model.keras" "$DEST/best_model.keras.new"; then
  mv "$DEST/best_model.keras.new" "$DEST/best_model.keras"
  mv "$DEST/best_model.json.new" "$DEST/best_model.json"
  echo "model synced from s3://$MODEL_BUCKET/models/latest/"
elif [ ! -f "$DEST/best_model.keras" ]; then
  cp /opt/pneumonia/models/best_model.keras /opt/pneumonia/models/best_model.json "$DEST/"
  echo "no model in S3 yet: using the model shipped in the repository"
fi
chown -R pneumonia:pneumonia "$DEST"
