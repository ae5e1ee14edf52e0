"""Static checks of terraform/: topology rules parsed with python-hcl2, checkov, shellcheck, user_data rendering.

No AWS account and no terraform binary are needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.helpers import REPO

TF = REPO / "terraform"
TEMPLATES = sorted((TF / "templates").glob("*.tftpl"))
SHELL_SCRIPTS = sorted([*REPO.glob("scripts/*.sh"), *REPO.glob("deploy/provision/*.sh"), REPO / ".ci" / "run"])


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


def _load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return _unquote(hcl2.load(fh))


@pytest.fixture(scope="module")
def tf() -> dict[str, dict[str, Any]]:
    return {p.name: _load(p) for p in sorted(TF.glob("*.tf"))}


def _resources(tf: dict, kind: str) -> dict[str, dict]:
    found = {}
    for doc in tf.values():
        for block in doc.get("resource", []):
            for name, body in block.get(kind, {}).items():
                found[name] = body
    return found


def _locals(tf: dict) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for doc in tf.values():
        for block in doc.get("locals", []):
            merged.update(block)
    return merged


def test_layout_in_the_terraform_aws_modules_style() -> None:
    for name in ("versions.tf", "variables.tf", "outputs.tf", "network.tf", "security_groups.tf", "instances.tf",
                 "keys.tf", "iam.tf", "storage.tf", "terraform.tfvars.example"):
        assert (TF / name).is_file(), name


def test_every_variable_has_description_and_type(tf: dict) -> None:
    variables = {k: v for block in tf["variables.tf"]["variable"] for k, v in block.items()}
    for name, body in variables.items():
        assert body.get("description"), f"{name} lacks a description"
        assert body.get("type"), f"{name} lacks a type"
    for name in ("region", "vpc_cidr", "public_subnet_cidrs", "private_subnet_cidrs", "admin_ssh_cidrs",
                 "api_instance_count"):
        assert "validation" in variables[name], f"{name} lacks validation"



def test_training_args_accept_options_only(tf: dict) -> None:
    """``training_args`` lands in user_data inside double quotes: options pass, shell syntax does not."""
    body = next(b["training_args"] for b in tf["variables.tf"]["variable"] if "training_args" in b)
    condition = body["validation"][0]["condition"]
    literal = re.search(r'regex\("((?:[^"\\]|\\.)*)", var\.training_args\)', condition).group(1)
    pattern = re.compile(re.sub(r"\\(.)", r"\1", literal))  # HCL string escapes
    for ok in (body["default"], "", "--weights imagenet --epochs 15", "--fine-tune-layers 40 --augment fov-neutral"):
        assert pattern.fullmatch(ok), ok
    for bad in ("rm -rf /", "--epochs 1; reboot", '--a "x', "--a $(id)", "--a `id`", "--a x && y", "--a 'x"):
        assert not pattern.fullmatch(bad), bad

EXPECTED_FLOWS = {
    ("nginx", "ui", 5001), ("nginx", "api", 5000), ("nginx", "monitoring", 3000),
    ("ui", "api", 5000), ("training", "api", 5000),
    ("monitoring", "api", 5000), ("monitoring", "ui", 5001), ("monitoring", "api", 9121), ("monitoring", "nginx", 9113),
    ("monitoring", "nginx", 3903), ("monitoring", "nginx", 9100), ("monitoring", "ui", 9100), ("monitoring", "api", 9100),
    ("monitoring", "monitoring", 9100), ("monitoring", "training", 9100),
}


def test_security_group_flows_are_least_privilege(tf: dict) -> None:
    local = _locals(tf)
    flows = {(f["from"], f["to"], int(f["port"])) for f in local["base_flows"].values()}
    assert flows == EXPECTED_FLOWS
    # Redis (6379) only from the API and the training host, in both Redis modes.
    redis_sources = re.findall(r'from = "(\w+)", to = "\w+", port = 6379', (TF / "locals.tf").read_text())
    assert sorted(redis_sources) == ["api", "training", "training"]
    # Internal rules always reference security groups, never CIDRs.
    for kind in ("aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule"):
        assert "cidr_ipv4" not in _resources(tf, kind)["internal"]
        assert "referenced_security_group_id" in _resources(tf, kind)["internal"]


def test_only_nginx_80_443_is_open_to_the_world(tf: dict) -> None:
    ingress = _resources(tf, "aws_vpc_security_group_ingress_rule")
    world = {name for name, body in ingress.items() if body.get("cidr_ipv4") == "0.0.0.0/0"}
    assert world == {"nginx_public"}
    assert ingress["nginx_public"]["for_each"] == '${toset(["80", "443"])}'
    assert 'role["nginx"]' in ingress["nginx_public"]["security_group_id"]
    assert 'role["nginx"]' in ingress["admin_ssh"]["security_group_id"]
    text = (TF / "variables.tf").read_text()
    assert 'c != "0.0.0.0/0"' in text  # admin SSH can never be opened to the world


def test_only_nginx_is_public(tf: dict) -> None:
    for subnet in _resources(tf, "aws_subnet").values():
        assert subnet.get("map_public_ip_on_launch") in (None, False)
    instance = _resources(tf, "aws_instance")["host"]
    assert "associate_public_ip_address" not in instance
    eips = _resources(tf, "aws_eip")
    assert set(eips) == {"nat", "nginx"}
    association = _resources(tf, "aws_eip_association")["nginx"]
    assert association["instance_id"] == '${aws_instance.host["nginx"].id}' and "instance" not in eips["nginx"]
    hosts = _locals(tf)["hosts"]
    assert "aws_subnet.public[0]" in hosts and hosts.count("aws_subnet.public") == 1  # only Nginx


def test_every_instance_is_hardened(tf: dict) -> None:
    instance = _resources(tf, "aws_instance")["host"]
    assert instance["metadata_options"][0]["http_tokens"] == "required"
    assert instance["root_block_device"][0]["encrypted"] is True
    assert instance["monitoring"] == "${var.detailed_monitoring}"
    assert "iam_instance_profile" in instance and "Role" in instance["tags"]


def test_bucket_private_encrypted_versioned(tf: dict) -> None:
    block = _resources(tf, "aws_s3_bucket_public_access_block")["models"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    assert _resources(tf, "aws_s3_bucket_versioning")["models"]["versioning_configuration"][0]["status"] == "Enabled"
    sse = _resources(tf, "aws_s3_bucket_server_side_encryption_configuration")["models"]
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"


def test_alerts_reach_the_topic_even_when_the_monitoring_host_fails(tf: dict) -> None:
    topic = "${aws_sns_topic.alerts.arn}"
    assert _resources(tf, "aws_sns_topic")["alerts"]["kms_master_key_id"] == "${aws_kms_key.this.arn}"
    alarm = _resources(tf, "aws_cloudwatch_metric_alarm")["status_check"]
    assert alarm["for_each"] == "${local.hosts}" and alarm["metric_name"] == "StatusCheckFailed"
    assert alarm["alarm_actions"] == alarm["ok_actions"] == [topic]
    key_policy = next(block["aws_iam_policy_document"]["kms"] for doc in tf.values() for block in doc.get("data", [])
                      if "kms" in block.get("aws_iam_policy_document", {}))
    cloudwatch = [s for s in key_policy["statement"]
                  if s["principals"][0]["identifiers"] == ["cloudwatch.amazonaws.com"]]
    assert cloudwatch and "kms:GenerateDataKey*" in cloudwatch[0]["actions"]  # or the alarm cannot publish


def test_key_pair_written_0400_and_never_output(tf: dict) -> None:
    key_file = _resources(tf, "local_sensitive_file")["private_key"]
    assert key_file["file_permission"] == "0400"
    assert _resources(tf, "aws_key_pair")["this"]["key_name"] == "${var.key_name}"
    outputs = (TF / "outputs.tf").read_text()
    assert "tls_private_key" not in outputs and "private_key_openssh" not in outputs


def test_no_hard_coded_ami_ip_or_secret() -> None:
    for path in [*TF.glob("*.tf"), *TEMPLATES]:
        text = re.sub(r"(?m)^\s*#.*$", "", path.read_text())
        assert not re.search(r"\bami-[0-9a-f]{8,}\b", text), path
        assert not re.search(r"(password|token|secret)\s*=\s*\"[^$\"][^\"]*\"", text, re.I), path
        if path.name != "variables.tf":  # CIDR defaults live only in variables.tf
            assert not re.search(r"\b10\.\d+\.\d+\.\d+\b", text), path


SAMPLE = {
    "role": "api", "host_name": "api-1", "repo_url": "https://example.org/repo.git", "repo_branch": "main",
    "region": "eu-west-1", "ssm_prefix": "/pneumonia", "model_bucket": "pneumonia-models-abc",
    "alert_topic_arn": "arn:aws:sns:eu-west-1:123456789012:pneumonia-alerts",
    "monitoring_ip": "10.20.11.10", "public_ip": "203.0.113.7", "redis_url": "redis://10.20.10.20:6379/0",
    "use_elasticache": "false", "data_volume_id": "vol-0123456789abcdef0",
    "max_upload_mb": "20", "result_ttl": "2592000", "training_args": "--backbone resnet50 --epochs 15",
}


def _render_templatefile(text: str, values: dict[str, str]) -> str:
    """Terraform's templatefile for plain ${name} interpolations ($${...} stays literal)."""
    def sub(match: re.Match) -> str:
        name = match.group(1)
        assert name in values, f"template uses ${{{name}}} that the test does not provide"
        return values[name]

    text = re.sub(r"(?<!\$)\$\{(\w+)\}", sub, text)
    return text.replace("$${", "${")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_user_data_renders_to_valid_shell(template: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "user_data.sh"
    rendered.write_text(_render_templatefile(template.read_text(), SAMPLE))
    assert subprocess.run(["bash", "-n", str(rendered)], capture_output=True).returncode == 0
    check = subprocess.run(["shellcheck", str(rendered)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    # every templatefile() variable passed in instances.tf (local.settings and the host's own) is used,
    # and vice versa; each role's settings are among them
    tf = {"instances.tf": _load(TF / "instances.tf")}
    settings, role_settings = _locals(tf)["settings"], _locals(tf)["role_settings"]
    own = set(re.findall(r"^\s+(\w+)\s+=", (TF / "instances.tf").read_text().split("templatefile(")[1]
                         .split("))")[0], re.M))
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", template.read_text()))
    assert used == set(settings) | own and not set(settings) & own
    assert set().union(*role_settings.values()) <= set(settings)


def _service_type(unit: str) -> str:
    """``Type=`` of a unit from deploy/systemd/ or the distribution's (installed by make test)."""
    for folder in (REPO / "deploy/systemd", Path("/lib/systemd/system"), Path("/usr/lib/systemd/system")):
        if (folder / f"{unit}.service").is_file():
            found = re.search(r"^Type=(\w+)", (folder / f"{unit}.service").read_text(), re.M)
            return found.group(1) if found else "simple"
    raise AssertionError(f"no unit file for {unit}: scripts/install_system_deps.sh installs it")


def test_provisioning_reloads_only_services_that_were_ready_when_started() -> None:
    """``systemctl reload`` is a signal; sent right after ``enable --now`` of a Type=simple service
    it can arrive before the handler exists. CI's rehearsal lost Prometheus that way (a SIGHUP
    within ~50 ms of its start kills it); forking and notify services are ready when start returns."""
    reloaded = re.findall(r"systemctl reload (\S+)", (REPO / "deploy/provision/provision.sh").read_text())
    assert reloaded, "the pattern no longer matches provision.sh"
    racing = {unit: kind for unit in reloaded if (kind := _service_type(unit)) not in ("forking", "notify")}
    assert not racing, f"reloaded without waiting for readiness: {racing}"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="needs root and losetup")
def test_data_volume_is_formatted_once_and_keeps_its_data(tmp_path: Path) -> None:
    """deploy/provision/data_volume.sh on a real block device (a loop device): a blank volume gets a
    file system; mounted again, as on a replaced host, it keeps its data and /etc/fstab names it once."""
    script = REPO / "deploy/provision/data_volume.sh"
    image, mount, fstab = tmp_path / "volume.img", tmp_path / "redis", tmp_path / "fstab"
    image.write_bytes(b"")
    os.truncate(image, 64 * 2**20)
    attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attached.returncode:  # a container without loop devices, as the rehearsal without namespaces
        pytest.skip(f"no loop device here: {attached.stderr.strip()}")
    loop = attached.stdout.strip()
    env = {**os.environ, "FSTAB": str(fstab), "DATA_VOLUME_WAIT_SECONDS": "0"}
    try:
        for boot in range(2):  # the first device path is absent (another kind of host), the second attached
            done = subprocess.run([str(script), str(mount), str(tmp_path / "no-such-device"), loop], env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert subprocess.run(["mountpoint", "-q", str(mount)]).returncode == 0
            if boot == 0:
                (mount / "appendonly.aof").write_text("stored before the host was replaced")
                subprocess.run(["umount", str(mount)], check=True)
        assert (mount / "appendonly.aof").read_text() == "stored before the host was replaced"
        uuid = subprocess.run(["blkid", "-s", "UUID", "-o", "value", loop], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert fstab.read_text() == f"UUID={uuid} {mount} ext4 defaults,nofail 0 2\n"
        missing = subprocess.run([str(script), str(tmp_path / "elsewhere"), str(tmp_path / "no-such-device")],
                                 env=env, capture_output=True, text=True)
        assert missing.returncode == 1 and "appeared within 0s" in missing.stderr
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
        subprocess.run(["losetup", "-d", loop], capture_output=True)


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def _certificate_pair(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}.example",
             "-keyout", str(key), "-out", str(cert))
    return cert, key


def test_nginx_serves_the_operators_certificate_else_keeps_or_makes_one(tmp_path: Path) -> None:
    """deploy/provision/tls_certificate.sh: a host without a certificate makes a self-signed one for its
    addresses and keeps it; the operator's pair (from SSM) replaces it when cert and key belong together."""
    script, tls = REPO / "deploy/provision/tls_certificate.sh", tmp_path / "tls"
    empty_cert, empty_key = tmp_path / "none.crt", tmp_path / "none.key"  # no SSM parameter: empty files
    empty_cert.write_text("")
    empty_key.write_text("")

    def run(cert: Path, key: Path) -> subprocess.CompletedProcess:  # the Elastic IP, the host's addresses
        return subprocess.run([str(script), str(tls), str(cert), str(key), "203.0.113.7", "10.20.0.10", "fd00::2"],
                              capture_output=True, text=True)

    def served() -> str:
        return _openssl("x509", "-in", str(tls / "pneumonia.crt"), "-noout", "-fingerprint", "-sha256")

    assert run(empty_cert, empty_key).returncode == 0
    names = _openssl("x509", "-in", str(tls / "pneumonia.crt"), "-noout", "-ext", "subjectAltName")
    assert names.split("\n", 1)[1].strip() == "IP Address:203.0.113.7, IP Address:10.20.0.10"
    assert (tls / "pneumonia.key").stat().st_mode & 0o777 == 0o600
    made = served()
    assert run(empty_cert, empty_key).returncode == 0 and served() == made  # kept, not made again

    operator_cert, operator_key = _certificate_pair(tmp_path, "operator")
    assert run(operator_cert, operator_key).returncode == 0
    assert served() == _openssl("x509", "-in", str(operator_cert), "-noout", "-fingerprint", "-sha256") != made
    assert (tls / "pneumonia.key").read_text() == operator_key.read_text()

    _, other_key = _certificate_pair(tmp_path, "other")
    mismatched = run(operator_cert, other_key)
    assert mismatched.returncode == 0 and "do not belong together" in mismatched.stderr
    assert (tls / "pneumonia.key").read_text() == operator_key.read_text()  # the working pair stays


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    check = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 0, check.stdout


def test_checkov_has_no_unexplained_failure() -> None:
    checkov = REPO / ".venv-checkov" / "bin" / "checkov"
    assert checkov.exists() or shutil.which("checkov"), "checkov missing: make test installs it into .venv-checkov"
    proc = subprocess.run([str(checkov) if checkov.exists() else "checkov", "-d", str(TF), "--framework",
                           "terraform", "--skip-download", "-o", "json"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    for skipped in report["results"]["skipped_checks"]:
        assert (skipped.get("check_result") or {}).get("suppress_comment"), f"{skipped['check_id']} without a reason"
