"""The deployment as Terraform describes it: subnets, hosts (role, private address, security
groups, rendered user_data) and every security-group rule, read from ``terraform/*.tf``.

Variables take their defaults (or the overrides given); locals are evaluated on demand, so
values only AWS knows (AMIs, bucket names) stay :class:`~scripts.rehearsal.hcl.Unknown` unless
something the rehearsal needs depends on them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

from scripts.rehearsal.hcl import HclError, Ref, Scope, Unknown, evaluate

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Rule:
    """One security-group rule: ``direction`` is ``ingress`` or ``egress`` of ``group``; the peer is
    another group (``peer_group``) or a CIDR (``peer_cidr``)."""

    name: str
    direction: str
    group: str
    protocol: str
    from_port: int
    to_port: int
    peer_group: str = ""
    peer_cidr: str = ""
    description: str = ""

    def covers(self, port: int) -> bool:
        return self.protocol in ("tcp", "-1") and self.from_port <= port <= self.to_port


@dataclass(frozen=True)
class Host:
    """One EC2 instance of ``aws_instance.host``."""

    name: str
    role: str
    ip: str
    subnet: str
    public: bool
    groups: tuple[str, ...]
    user_data: str


@dataclass(frozen=True)
class Topology:
    vpc_cidr: str
    public_subnets: tuple[str, ...]
    private_subnets: tuple[str, ...]
    hosts: dict[str, Host]
    rules: tuple[Rule, ...]
    host_lists: str  # the SSM parameter host_lists (terraform/host_lists.tf), as provision.sh reads it

    def allows(self, source: Host | None, source_ip: str, dest: Host, port: int) -> bool:
        """Whether the security groups let ``source`` (None: a client on the internet) open a TCP
        connection to ``dest``:``port``: an egress rule of the source's groups and an ingress rule of
        the destination's groups must both match (groups are stateful: replies are always allowed)."""
        out = source is None or any(self._matches(r, "egress", source.groups, dest, port) for r in self.rules)
        return out and any(self._matches(r, "ingress", dest.groups, source, port, source_ip) for r in self.rules)

    def _matches(self, rule: Rule, direction: str, groups: tuple[str, ...], peer: Host | None, port: int,
                 peer_ip: str = "") -> bool:
        if rule.direction != direction or rule.group not in groups or not rule.covers(port):
            return False
        if rule.peer_group:
            return peer is not None and rule.peer_group in peer.groups
        address = peer.ip if peer is not None else peer_ip
        return ipaddress.ip_address(address) in ipaddress.ip_network(rule.peer_cidr)


class _Module(Scope):
    """The root scope of one Terraform module: ``var``, ``local``, ``path`` and resources."""

    def __init__(self, folder: Path, overrides: dict[str, Any]) -> None:
        super().__init__(None, {})
        self.folder = folder
        self.blocks: dict[str, list[dict]] = {}
        for path in sorted(folder.glob("*.tf")):
            with path.open() as fh:
                for kind, items in hcl2.load(fh).items():
                    self.blocks.setdefault(kind, []).extend(items)
        self.variables = {name: overrides[name] if name in overrides else evaluate(spec.get("default"), self)
                          for block in self.blocks.get("variable", []) for name, spec in _named(block)}
        self.local_sources = {k: v for block in self.blocks.get("locals", []) for k, v in block.items()
                              if not k.startswith("__")}
        self.local_values: dict[str, Any] = {}
        self.resources = {(rtype, name): body for block in self.blocks.get("resource", [])
                          for rtype, named in _named(block) for name, body in _named(named)}

    def root_lookup(self, name: str) -> Any:
        if name == "var":
            return self.variables
        if name == "local":
            return _Locals(self)
        if name == "path":
            return {"module": str(self.folder), "root": str(self.folder), "cwd": str(self.folder)}
        if name == "data":
            return Unknown("data")
        if any(rtype == name for rtype, _ in self.resources):
            return _ResourceType(self, name)
        raise HclError(f"unknown name {name!r}")

    def local(self, name: str) -> Any:
        if name not in self.local_values:
            if name not in self.local_sources:
                raise HclError(f"no local {name!r}")
            self.local_values[name] = evaluate(self.local_sources[name], self)
        return self.local_values[name]

    def instances(self, rtype: str, name: str) -> list[tuple[Any, dict[str, Any], Scope]]:
        """``(key, raw body, scope with each/count)`` for every instance of a resource."""
        body = self.resources[(rtype, name)]
        if "for_each" in body:
            source = evaluate(body["for_each"], self)
            pairs = source.items() if isinstance(source, dict) else ((v, v) for v in source)
            return [(k, body, self.child({"each": {"key": k, "value": v}})) for k, v in pairs]
        if "count" in body:
            return [(i, body, self.child({"count": {"index": i}})) for i in range(int(evaluate(body["count"], self)))]
        return [(None, body, self)]


class _Locals(dict):
    """``local.NAME`` evaluated on first use."""

    def __init__(self, module: _Module) -> None:
        super().__init__()
        self.module = module

    def __contains__(self, name: object) -> bool:
        return name in self.module.local_sources

    def __getitem__(self, name: str) -> Any:
        return self.module.local(name)


@dataclass(frozen=True)
class _ResourceType:
    """``aws_subnet`` in ``aws_subnet.private[0].id``: its resources by name."""

    module: _Module
    type: str

    def hcl_attr(self, name: str) -> "_Resource":
        return _Resource(self.module, self.type, name)


@dataclass(frozen=True)
class _Resource:
    """``aws_subnet.private``: as many instances as its count or for_each."""

    module: _Module
    type: str
    name: str

    def __len__(self) -> int:
        return len(self.module.instances(self.type, self.name))

    def hcl_index(self, key: Any) -> Ref:
        return Ref(self.type, self.name, key)

    def hcl_attr(self, attr: str) -> Ref:
        return Ref(self.type, self.name, None, attr)


def _named(block: dict) -> list[tuple[str, Any]]:
    return [(k.strip('"'), v) for k, v in block.items() if not k.startswith("__")]


def _group(value: Any) -> str:
    if isinstance(value, Ref) and value.type == "aws_security_group":
        return str(value.key)
    raise HclError(f"not a security group reference: {value}")


def _rules(module: _Module) -> list[Rule]:
    rules = []
    for (rtype, name), _ in module.resources.items():
        direction = {"aws_vpc_security_group_ingress_rule": "ingress",
                     "aws_vpc_security_group_egress_rule": "egress"}.get(rtype)
        if direction is None:
            continue
        for key, body, scope in module.instances(rtype, name):
            value = {k: evaluate(v, scope) for k, v in body.items() if k not in ("for_each", "count")
                     and not k.startswith("__")}
            protocol = str(value.get("ip_protocol", "tcp"))
            rules.append(Rule(
                name=f"{rtype}.{name}" + (f"[{key!r}]" if key is not None else ""), direction=direction,
                group=_group(value["security_group_id"]), protocol=protocol,
                from_port=int(value.get("from_port", 0)) if protocol != "-1" else 0,
                to_port=int(value.get("to_port", 65535)) if protocol != "-1" else 65535,
                peer_group=_group(value["referenced_security_group_id"]) if "referenced_security_group_id" in value
                else "",
                peer_cidr=str(value.get("cidr_ipv4", "")), description=str(value.get("description", "")),
            ))
    return rules


def load(folder: Path, overrides: dict[str, Any] | None = None) -> Topology:
    """Read ``folder/*.tf`` and compute the deployment with the variables' defaults."""
    module = _Module(folder, overrides or {})
    public = tuple(module.variables["public_subnet_cidrs"])
    private = tuple(module.variables["private_subnet_cidrs"])
    hosts = {}
    for key, body, scope in module.instances("aws_instance", "host"):
        ip = evaluate(body["private_ip"], scope)
        subnet = next(c for c in public + private if ipaddress.ip_address(ip) in ipaddress.ip_network(c))
        hosts[key] = Host(
            name=key, role=scope.lookup("each")["value"]["role"], ip=ip, subnet=subnet, public=subnet in public,
            groups=tuple(_group(g) for g in evaluate(body["vpc_security_group_ids"], scope)),
            user_data=evaluate(body["user_data"], scope),
        )
    (_, lists, scope), = module.instances("aws_ssm_parameter", "host_lists")
    return Topology(vpc_cidr=module.variables["vpc_cidr"], public_subnets=public, private_subnets=private,
                    hosts=hosts, rules=tuple(_rules(module)), host_lists=evaluate(lists["value"], scope))
