"""The rehearsal's stand-in for the hosts' EBS data volumes (``terraform/data_volumes.tf``): a loop
device over a sparse file per volume, named as the volume appears on an NVMe (Nitro) EC2 host,
``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<volume id without its dash>``, so that
provisioning mounts it with the same script as on AWS (``deploy/provision/data_volume.sh``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from scripts.rehearsal.network import run

BY_ID = Path("/dev/disk/by-id")
SIZE_BYTES = 256 * 2**20


@dataclass
class DataVolumes:
    """Loop devices under ``workdir``, their by-id links, and what to remove at the end."""

    workdir: Path
    devices: dict[str, str] = field(default_factory=dict)  # host name -> /dev/loopN
    created: list[Path] = field(default_factory=list)

    @staticmethod
    def unavailable() -> str:
        """Why no loop device can be attached here (a container without them), or ''."""
        probe = run("losetup", "--find", check=False)
        return "" if probe.returncode == 0 else (probe.stderr.strip() or "losetup --find failed")

    def attach(self, host: str) -> str:
        """A blank volume for ``host``, attached; returns the volume id its host.env gets."""
        image = self.workdir / f"{host}.volume"
        with image.open("wb") as fh:
            fh.truncate(SIZE_BYTES)
        self.devices[host] = run("losetup", "--find", "--show", str(image)).stdout.strip()
        volume_id = f"vol-rehearsal{len(self.devices)}"
        for folder in (BY_ID.parent, BY_ID):
            if not folder.exists():
                folder.mkdir()
                self.created.append(folder)
        link = BY_ID / f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
        os.symlink(self.devices[host], link)
        self.created.append(link)
        return volume_id

    def destroy(self) -> None:
        """Detach every loop device (the kernel frees one still mounted when its last user goes)."""
        for device in self.devices.values():
            run("losetup", "--detach", device, check=False)
        self.devices.clear()
        for path in reversed(self.created):
            if path.is_symlink():
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        self.created.clear()
