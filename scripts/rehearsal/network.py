"""The VPC on one machine: a network namespace per host, a router namespace with one bridge per
subnet (the VPC router, at each subnet's first address), and an ``internet`` client namespace.

Every name starts with a per-run prefix, and :meth:`Lab.destroy` removes what :meth:`Lab.build`
made (processes in the namespaces included), even after a partial build.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from scripts.rehearsal.topology import Topology

INTERNET_CLIENT = "203.0.113.10/24"  # TEST-NET-3: a client out on the internet
INTERNET_GATEWAY = "203.0.113.1/24"
REQUIRED_COMMANDS = ("ip", "nft", "unshare", "mount")


class LabError(RuntimeError):
    """The namespaces could not be built (missing tools or privileges)."""


def preflight() -> None:
    """Raise ``LabError`` naming what is missing to build the lab."""
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if missing:
        raise LabError(f"the rehearsal needs {', '.join(missing)} (apt-get install iproute2 nftables util-linux)")
    if os.geteuid() != 0:
        raise LabError("the rehearsal creates network namespaces and firewalls: run it as root (CI does)")
    probe = subprocess.run(["ip", "netns", "add", "rh-preflight"], capture_output=True, text=True)
    if probe.returncode:
        raise LabError(f"cannot create a network namespace here: {probe.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", "rh-preflight"], check=False)


def run(*argv: str, ns: str | None = None, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, inside namespace ``ns`` when given."""
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(full, capture_output=True, text=True, **kwargs)
    if check and done.returncode:
        raise LabError(f"{' '.join(full)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


@dataclass
class Lab:
    """Namespaces and links for one rehearsal run."""

    topology: Topology
    prefix: str
    namespaces: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def router(self) -> str:
        return self.ns("router")

    @property
    def internet(self) -> str:
        return self.ns("internet")

    def _add_ns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "link", "set", "lo", "up", ns=name)

    def _veth(self, index: int, ns: str, address: str, gateway: str, bridge: str | None) -> None:
        outside, inside = f"{self.prefix}o{index}", f"{self.prefix}i{index}"
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", ns)
        run("ip", "link", "set", outside, "netns", self.router)
        run("ip", "link", "set", inside, "name", "eth0", ns=ns)
        run("ip", "addr", "add", address, "dev", "eth0", ns=ns)
        run("ip", "link", "set", "eth0", "up", ns=ns)
        run("ip", "route", "add", "default", "via", gateway.split("/")[0], ns=ns)
        if bridge:
            run("ip", "link", "set", outside, "master", bridge, ns=self.router)
        else:
            run("ip", "addr", "add", gateway, "dev", outside, ns=self.router)
        run("ip", "link", "set", outside, "up", ns=self.router)

    def build(self) -> None:
        """Router, one bridge per subnet, one namespace per host, and the internet client."""
        t = self.topology
        self._add_ns(self.router)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.router)
        bridges = {}
        for i, cidr in enumerate(t.public_subnets + t.private_subnets):
            net = ipaddress.ip_network(cidr)
            bridge = f"br{i}"
            run("ip", "link", "add", bridge, "type", "bridge", ns=self.router)
            run("ip", "addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", bridge, ns=self.router)
            run("ip", "link", "set", bridge, "up", ns=self.router)
            bridges[cidr] = (bridge, f"{net.network_address + 1}/{net.prefixlen}")
        for i, host in enumerate(t.hosts.values()):
            self._add_ns(self.ns(host.name))
            bridge, gateway = bridges[host.subnet]
            prefixlen = ipaddress.ip_network(host.subnet).prefixlen
            self._veth(i, self.ns(host.name), f"{host.ip}/{prefixlen}", gateway, bridge)
        self._add_ns(self.internet)
        self._veth(len(t.hosts), self.internet, INTERNET_CLIENT, INTERNET_GATEWAY, None)

    def destroy(self) -> None:
        """Kill every process in the namespaces, then delete them (their links go with them)."""
        for name in reversed(self.namespaces):
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            if pids:
                subprocess.run(["kill", "-KILL", *pids], capture_output=True, check=False)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        self.namespaces.clear()


def leftover_namespaces(prefix: str) -> list[str]:
    """Namespaces of an earlier run with this prefix (for cleanup after a crash)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(prefix + "-")]
