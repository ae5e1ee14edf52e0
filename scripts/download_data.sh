#!/usr/bin/env bash
# Download the "Chest X-Ray Images (Pneumonia)" data set (Kermany et al. 2018, CC BY 4.0) in the
# Kaggle layout <dest>/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/.
#
# Usage: scripts/download_data.sh [DEST]        (default DEST: data/)
#
# Source: Mendeley Data, "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for
# Classification", v2, doi:10.17632/rscbjbr9sj.2 (the ChestXRay2017.zip archive, about 1.2 GB).
# Alternatively, with a Kaggle account and the kaggle CLI configured:
#   kaggle datasets download -d paultimothymooney/chest-xray-pneumonia
# The tests do not need this: they use the 16 images in tests/fixtures/.
set -euo pipefail

DEST=${1:-data}
URL=${PNEUMONIA_DATA_URL:-https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded}

mkdir -p "$DEST"
archive="$DEST/ChestXRay2017.zip"
if [ ! -s "$archive" ]; then
  echo "downloading $URL"
  curl -fL --retry 3 -o "$archive.part" "$URL"
  mv "$archive.part" "$archive"
fi
echo "unpacking into $DEST"
unzip -q -o "$archive" -d "$DEST"
# The Mendeley archive names the folder chest_xray/ with train/ and test/; the trainer carves its
# own patient-level validation split from train/.
for split in train test; do
  for cls in NORMAL PNEUMONIA; do
    n=$(find "$DEST/chest_xray/$split/$cls" -type f \( -name '*.jpeg' -o -name '*.jpg' \) | wc -l)
    echo "$split/$cls: $n images"
  done
done
echo "done: train with  python -m model.cnn --data $DEST/chest_xray"
