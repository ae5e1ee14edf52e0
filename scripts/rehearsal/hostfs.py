"""Each rehearsal host's own view of the file system, so that every role's provisioning writes
the same paths as on its EC2 host (``/etc/pneumonia``, ``/etc/nginx``, ``/var/lib/redis``, ...)
without touching this machine's: a private mount namespace with per-host folders (and its own
``/etc/fstab``) bound over them, and the working tree bound at ``/opt/pneumonia`` where the user_data
clones the repository."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Written by provision.sh or by the services it starts.
PRIVATE_DIRS = ("/etc/pneumonia", "/etc/nginx", "/etc/default", "/etc/prometheus", "/etc/mtail", "/etc/systemd/system",
                "/usr/local/bin", "/var/lib/pneumonia", "/var/lib/redis", "/var/lib/prometheus", "/var/log", "/run")
SEEDED_DIRS = ("/etc/nginx", "/etc/default")  # start from the distribution's files, as on a fresh host
PRIVATE_FILES = ("/etc/fstab",)  # data_volume.sh records the host's data volume there
REPO_MOUNT = "/opt/pneumonia"


@dataclass
class HostFs:
    """Per-host folders under ``root`` and the command prefix that enters the host."""

    root: Path
    repo: Path
    created_mount_points: list[Path] = field(default_factory=list)

    def prepare(self) -> None:
        for folder in PRIVATE_DIRS:
            mine = self.root / folder.lstrip("/")
            if folder in SEEDED_DIRS:
                shutil.copytree(folder, mine, symlinks=True)
            else:
                mine.mkdir(parents=True, exist_ok=True)
        (self.root / "var/log/nginx").mkdir(exist_ok=True)
        for name in PRIVATE_FILES:
            mine = self.root / name.lstrip("/")
            mine.parent.mkdir(parents=True, exist_ok=True)
            mine.write_bytes(Path(name).read_bytes() if Path(name).is_file() else b"")
            if not Path(name).exists():
                Path(name).touch()
                self.created_mount_points.append(Path(name))
        for point in (*PRIVATE_DIRS, REPO_MOUNT):
            path = Path(point)
            if not path.exists():
                path.mkdir(parents=True)
                self.created_mount_points.append(path)

    def enter(self, namespace: str, argv: list[str]) -> list[str]:
        """``argv`` run on this host: inside its network namespace and its own mounts."""
        binds = [f"mount --bind {shlex.quote(str(self.root / d.lstrip('/')))} {d}" for d in PRIVATE_DIRS + PRIVATE_FILES]
        binds.append(f"mount --bind {shlex.quote(str(self.repo))} {REPO_MOUNT}")
        script = "set -e; " + "; ".join(binds) + '; exec "$@"'
        return ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "host", *argv]

    def remove_mount_points(self) -> None:
        for path in reversed(self.created_mount_points):
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        self.created_mount_points.clear()
