"""The intended network policy (``deploy/network_policy.yml``) and the flow matrix checked against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from scripts.rehearsal.topology import Host, Topology

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "network_policy.yml"
INTERNET = "internet"
EXTRA_PORTS = (22, 9090)  # never allowed anywhere: probed so that opening them is noticed


@dataclass(frozen=True)
class Policy:
    """``allowed[source role][destination role]`` = ports; ``*`` as source means every host."""

    allowed: dict[str, dict[str, frozenset[int]]]

    @classmethod
    def load(cls, path: Path = POLICY) -> "Policy":
        raw = yaml.safe_load(path.read_text())
        return cls({src: {dst: frozenset(ports) for dst, ports in dests.items()} for src, dests in raw.items()})

    def allows(self, source_role: str, dest_role: str, port: int) -> bool:
        sources = [source_role] + (["*"] if source_role != INTERNET else [])
        return any(port in self.allowed.get(s, {}).get(dest_role, ()) for s in sources)

    def ports(self) -> set[int]:
        return {p for dests in self.allowed.values() for ports in dests.values() for p in ports}


@dataclass(frozen=True)
class Flow:
    """One probed connection with what the policy, the security groups and the wire said."""

    source: str
    dest: Host
    port: int
    policy: bool
    security_groups: bool
    observed: str = ""  # open, refused (reached the host, nothing listening) or blocked

    @property
    def passed_firewall(self) -> bool:
        return self.observed in ("open", "refused")

    @property
    def ok(self) -> bool:
        return self.passed_firewall == self.policy

    def describe(self) -> str:
        want = "ALLOWED" if self.policy else "DENIED"
        return (f"{self.source} -> {self.dest.name} ({self.dest.role}) {self.dest.ip}:{self.port}: "
                f"policy {want}, security groups {'allow' if self.security_groups else 'deny'}, "
                f"observed {self.observed.upper()}")


def flows(topology: Topology, policy: Policy, source_ip: str) -> list[Flow]:
    """Every (source, destination host, port) to probe, with the policy's and the groups' verdicts."""
    ports = sorted(policy.ports() | {r.from_port for r in topology.rules if r.from_port == r.to_port}
                   | set(EXTRA_PORTS))
    sources: list[Host | None] = [None, *topology.hosts.values()]
    out = []
    for source in sources:
        for dest in topology.hosts.values():
            if source is dest:
                continue
            for port in ports:
                out.append(Flow(
                    source=source.name if source else INTERNET, dest=dest, port=port,
                    policy=policy.allows(source.role if source else INTERNET, dest.role, port),
                    security_groups=topology.allows(source, source_ip, dest, port),
                ))
    return out


def matrix(results: list[Flow]) -> str:
    """The flow matrix as text: one line per source and destination, allowed ports marked."""
    lines = [f"{'source':<12} {'destination':<24} ports (+ open, o refused: allowed; - blocked; ! mismatch)"]
    keys = sorted({(f.source, f.dest.name) for f in results}, key=lambda k: (k[0] != INTERNET, k))
    for source, dest in keys:
        cells = []
        for f in sorted((f for f in results if (f.source, f.dest.name) == (source, dest)), key=lambda f: f.port):
            mark = {"open": "+", "refused": "o"}.get(f.observed, "-")
            cells.append(f"{f.port}{mark}{'' if f.ok else '!'}")
        host = next(f.dest for f in results if f.dest.name == dest)
        lines.append(f"{source:<12} {dest + ' ' + host.ip:<24} {' '.join(cells)}")
    return "\n".join(lines)
