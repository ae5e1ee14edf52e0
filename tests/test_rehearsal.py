"""The topology rehearsal: Terraform evaluated offline, the network policy, and (as root) the
real namespaces with firewalls generated from the security groups."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.rehearsal.firewall import ruleset
from scripts.rehearsal.hcl import Scope, evaluate
from scripts.rehearsal.network import LabError, preflight
from scripts.rehearsal.policy import INTERNET, Policy, flows
from scripts.rehearsal.topology import _Module, load
from tests.helpers import REPO

TERRAFORM = REPO / "terraform"


def _can_build_namespaces() -> str:
    try:
        preflight()
    except LabError as exc:
        return str(exc)
    return ""


NO_NAMESPACES = _can_build_namespaces()
needs_root = pytest.mark.skipif(bool(NO_NAMESPACES), reason=f"rehearsal cannot run here: {NO_NAMESPACES}")


@pytest.mark.parametrize("expression, expected", [
    ('"${merge({a = 1}, {b = [for i in range(3) : i * 2]})}"', {"a": 1, "b": [0, 2, 4]}),
    ('"${cidrhost("10.20.10.0/24", 20 + 1)}"', "10.20.10.21"),
    ('"${true ? {x = "api-${1 + 1}"} : {}}"', {"x": "api-2"}),
    ('"${{for k, v in {a = 1, b = 2} : "${k}${v}" => v if v > 1}}"', {"b2": 2}),
    ('"${join(" ", [for p in setproduct(["a"], ["80", "443"]) : "${p[0]}_${p[1]}"])}"', "a_80 a_443"),
])
def test_hcl_expressions(expression: str, expected: object) -> None:
    assert evaluate(expression, Scope(None, {})) == expected


def test_terraform_hosts_and_addresses_come_from_the_variables() -> None:
    topology = load(TERRAFORM)
    assert {h.role for h in topology.hosts.values()} == {"nginx", "ui", "api", "monitoring", "training"}
    assert topology.hosts["nginx"].public and not topology.hosts["ui"].public
    assert topology.hosts["nginx"].ip == "10.20.0.10" and topology.hosts["api-1"].ip == "10.20.10.20"
    bigger = load(TERRAFORM, {"api_instance_count": 2, "private_subnet_cidrs": ["10.9.1.0/24", "10.9.2.0/24"]})
    assert bigger.hosts["api-2"].ip == "10.9.2.21" and "API_SERVERS=10.9.1.20:5000 10.9.2.21:5000\n" in bigger.host_lists


def test_rendered_user_data_carries_the_peers_addresses() -> None:
    topology = load(TERRAFORM)
    monitoring, api = topology.hosts["monitoring"].user_data, topology.hosts["api-1"].user_data
    assert "REDIS_URL=redis://10.20.10.20:6379/0" in api and "\nREDIS_URL=\n" in monitoring  # each role its own
    assert "API_TARGETS=10.20.10.20:5000\n" in topology.host_lists and "TARGETS" not in monitoring
    assert all("${" not in host.user_data for host in topology.hosts.values())


def test_a_change_replaces_only_the_hosts_whose_settings_it_changes() -> None:
    """Any change of a host's user_data replaces the host (user_data_replace_on_change); which
    hosts exist is in the host lists (an SSM parameter the hosts re-read), not in user_data."""
    before = load(TERRAFORM)

    def changed(**overrides: object) -> tuple[set[str], set[str]]:
        after = load(TERRAFORM, overrides)
        lists = set(after.host_lists.splitlines()) ^ set(before.host_lists.splitlines())
        return ({name for name in before.hosts if name in after.hosts
                 and after.hosts[name].user_data != before.hosts[name].user_data},
                {line.split("=")[0] for line in lists})

    assert changed(enable_training_instance=False) == (set(), {"NODE_TARGETS"})
    assert changed(api_instance_count=2) == (set(), {"API_SERVERS", "API_TARGETS", "NODE_TARGETS"})
    assert changed(training_args="--epochs 5") == ({"training"}, set())
    assert changed(alert_email_addresses=["oncall@example.org"]) == (set(), set())  # a subscription only


def test_data_volumes_go_to_their_hosts_in_their_subnets() -> None:
    def volumes(**overrides: object) -> dict[str, str]:
        hosts = load(TERRAFORM, overrides).hosts
        found = {name: re.search(r"^DATA_VOLUME_ID=(.*)$", host.user_data, re.M).group(1) for name, host in hosts.items()}
        return {name: volume for name, volume in found.items() if volume}

    assert volumes(api_instance_count=2) == {"api-1": "known-after-apply.aws_ebs_volume.data-redis.id",
                                             "monitoring": "known-after-apply.aws_ebs_volume.data-prometheus.id"}
    assert volumes(use_elasticache=True) == {"monitoring": "known-after-apply.aws_ebs_volume.data-prometheus.id"}
    module = _Module(TERRAFORM, {})  # an EBS volume is in one availability zone: its host's subnet's
    hosts, private = load(TERRAFORM).hosts, module.variables["private_subnet_cidrs"]
    for volume in module.local("data_volumes").values():
        assert hosts[volume["host"]].subnet == private[volume["subnet"]], volume


def test_security_groups_implement_the_network_policy() -> None:
    """The static half of the rehearsal: every probed flow, the policy's verdict against the groups'."""
    topology = load(TERRAFORM)
    planned = flows(topology, Policy.load(), "203.0.113.10")
    drift = [f.describe() for f in planned if f.policy != f.security_groups]
    assert not drift, "\n".join(drift)
    assert any(f.source == INTERNET and f.dest.role == "nginx" and f.port == 80 and f.policy for f in planned)


def test_firewall_of_the_api_host() -> None:
    topology = load(TERRAFORM)
    rules = ruleset(topology.hosts["api-1"], topology)
    assert "policy drop" in rules and "ip saddr { 10.20.10.10 } tcp dport 5000 accept" in rules
    assert "ip saddr { 10.20.10.30 } tcp dport 6379 accept" in rules  # training only
    assert "ip saddr { 10.20.10.10 } tcp dport 6379" not in rules


def _rehearsal_namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.startswith("rh")]


def _broken_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    locals_tf = copy / "locals.tf"
    text = locals_tf.read_text()
    marker = "  base_flows = {\n"
    assert marker in text
    locals_tf.write_text(text.replace(marker, marker + '    ui_to_redis = { from = "ui", to = "api", port = 6379, '
                                                       'description = "a mistake: Redis opened to the UI" }\n'))
    return copy


def test_a_broken_security_group_is_caught_statically(tmp_path: Path) -> None:
    topology = load(_broken_copy(tmp_path))
    drift = [f for f in flows(topology, Policy.load(), "203.0.113.10") if f.policy != f.security_groups]
    assert [(f.source, f.dest.name, f.port) for f in drift] == [("ui", "api-1", 6379)]


@needs_root
def test_rehearsal_passes_end_to_end() -> None:
    done = subprocess.run([sys.executable, "-m", "scripts.rehearsal"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 mismatches" in done.stdout and "rehearsal passed" in done.stdout
    assert '"sign_in": true' in done.stdout and "all up" in done.stdout
    assert '"http_redirects_to_https": true' in done.stdout  # HTTPS with the host's certificate, verified
    if "data volumes: no loop device here" not in done.stdout:  # a container without loop devices says so
        for host, folder in (("api-1", "/var/lib/redis"), ("monitoring", "/var/lib/prometheus")):
            assert re.search(rf"^data volume of {host}: {folder} on /dev/loop\d+ ", done.stdout, re.M), host
    (REPO / "documentation" / "rehearsal_output.txt").write_text(done.stdout)
    assert not _rehearsal_namespaces()
    assert not Path("/dev/disk/by-id").exists() or not any(Path("/dev/disk/by-id").glob("*rehearsal*"))
    assert "/rehearsal-" not in subprocess.run(["losetup", "--list"], capture_output=True, text=True).stdout


@needs_root
def test_rehearsal_fails_on_a_broken_security_group(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "scripts.rehearsal", "--matrix-only", "--terraform",
                           str(_broken_copy(tmp_path))], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "UNEXPECTED FLOW: ui -> api-1 (api) 10.20.10.20:6379: policy DENIED" in done.stdout, done.stdout[-2000:]
    assert "REHEARSAL FAILED" in done.stderr


@needs_root
def test_rehearsal_cleans_up_when_interrupted() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "scripts.rehearsal"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first_line = proc.stdout.readline()
    assert first_line.startswith("network:"), first_line
    assert _rehearsal_namespaces()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and "interrupted" in output
    assert not _rehearsal_namespaces()
