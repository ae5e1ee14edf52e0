"""nftables rulesets generated from the Terraform security-group rules, one per host.

A host carries its security groups' rules: ``ingress`` rules become the input chain and
``egress`` rules the output chain, both with policy drop; replies pass (security groups are
stateful) and so does loopback. A rule that references a group allows the addresses of every
host that carries that group.
"""

from __future__ import annotations

from scripts.rehearsal.topology import Host, Rule, Topology


def _peer(rule: Rule, topology: Topology) -> str | None:
    if rule.peer_cidr:
        return rule.peer_cidr
    addresses = sorted(h.ip for h in topology.hosts.values() if rule.peer_group in h.groups)
    return "{ " + ", ".join(addresses) + " }" if addresses else None


def _statement(rule: Rule, topology: Topology, address_field: str) -> str | None:
    peer = _peer(rule, topology)
    if peer is None:
        return None  # the referenced group is on no host (e.g. ElastiCache): nothing to allow
    ports = str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}-{rule.to_port}"
    match = f"ip {address_field} {peer}"
    if rule.protocol == "-1":
        return f"{match} accept comment \"{rule.name}\""
    return f"{match} {rule.protocol} dport {ports} accept comment \"{rule.name}\""


def ruleset(host: Host, topology: Topology) -> str:
    """The nftables ruleset (for ``nft -f``) of one host."""
    chains = {"input": ("ingress", "saddr", "iif"), "output": ("egress", "daddr", "oif")}
    lines = ["flush ruleset", "table inet security_groups {"]
    for chain, (direction, address_field, lo) in chains.items():
        lines += [f"  chain {chain} {{", f"    type filter hook {chain} priority filter; policy drop;",
                  f"    {lo} lo accept", "    ct state established,related accept"]
        for rule in topology.rules:
            if rule.direction == direction and rule.group in host.groups:
                statement = _statement(rule, topology, address_field)
                if statement:
                    lines.append(f"    {statement}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
