#!/usr/bin/env bash
# data_volume.sh DIR DEVICE...: mount an attached EBS volume at DIR. Waits (DATA_VOLUME_WAIT_SECONDS,
# default 900) for the first of the DEVICE paths to appear (the volume is attached after the host
# boots), makes an ext4 file system only on a blank volume (one restored from a snapshot keeps its
# data), records it in /etc/fstab by UUID with nofail, and mounts it. provision.sh mounts Redis's data
# on api-1 and Prometheus's on the monitoring host this way (terraform/data_volumes.tf).
set -euo pipefail
dir=$1
shift
fstab=${FSTAB:-/etc/fstab}
wait_seconds=${DATA_VOLUME_WAIT_SECONDS:-900}

device=""
for ((waited = 0; ; waited += 5)); do
  for candidate in "$@"; do
    if [ -b "$candidate" ]; then
      device=$(readlink -f "$candidate")
      break 2
    fi
  done
  if [ "$waited" -ge "$wait_seconds" ]; then
    echo "data_volume: none of $* appeared within ${wait_seconds}s" >&2
    exit 1
  fi
  sleep 5
done

status=0
blkid -p "$device" >/dev/null 2>&1 || status=$?
if [ "$status" -eq 2 ]; then # nothing on it: a new, blank volume
  mkfs.ext4 -q -L pneumonia-data "$device"
elif [ "$status" -ne 0 ]; then
  echo "data_volume: cannot probe $device (blkid exit $status); not formatting it" >&2
  exit 1
fi
uuid=$(blkid -s UUID -o value "$device")
install -d "$dir"
grep -q "^UUID=$uuid " "$fstab" 2>/dev/null || echo "UUID=$uuid $dir ext4 defaults,nofail 0 2" >>"$fstab"
findmnt --source "$device" --mountpoint "$dir" >/dev/null || mount "$device" "$dir" # not just any mount there
echo "data_volume: $device (UUID $uuid) mounted at $dir"
