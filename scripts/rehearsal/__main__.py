"""Topology rehearsal: the AWS layout of ``terraform/`` as real hosts on this machine.

``python -m scripts.rehearsal`` (``make rehearsal``; root) reads ``terraform/*.tf``, builds one
network namespace per EC2 host with the Terraform addresses, one bridge per subnet and an
internet client, installs on every host an nftables firewall generated from its security-group
rules, provisions every role with ``deploy/provision/provision.sh`` (the script its user_data
runs, with the rehearsal switches documented there), then proves by real connections that the
wiring allows exactly the flows of ``deploy/network_policy.yml``: it prints the flow matrix, walks
the doctor's path (sign in, upload, result) and checks that Prometheus scrapes every target and
sees the doctor's requests in Nginx's answers (the edge log, through mtail), and that Redis and
Prometheus write to their data volumes (loop devices standing in for the EBS volumes).
Everything it created is removed at the end, also on Ctrl-C, errors and its time limit.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.rehearsal.firewall import ruleset
from scripts.rehearsal.hostfs import HostFs
from scripts.rehearsal.network import INTERNET_CLIENT, Lab, LabError, leftover_namespaces, preflight, run
from scripts.rehearsal.policy import Flow, Policy, flows, matrix
from scripts.rehearsal.topology import Host, Topology, load
from scripts.rehearsal.volumes import DataVolumes

REPO = Path(__file__).resolve().parents[2]
PREFIX = "rh"
ROLE_ORDER = ("api", "ui", "nginx", "monitoring", "training")  # peers before the hosts that call them
SECRET_NAMES = ("api_token", "flask_secret_key", "redis_password", "grafana_admin_password")
DOCTOR_IMAGE = REPO / "tests/fixtures/chest_xray/PNEUMONIA/person1946_bacteria_4874.jpeg"
# the folder on its data volume and the service that writes there, by role (deploy/provision/provision.sh)
DATA_VOLUME_USERS = {"api": ("/var/lib/redis", "pneumonia-redis.service"),
                     "monitoring": ("/var/lib/prometheus", "prometheus.service")}


class RehearsalFailed(RuntimeError):
    """A check failed; the message says which."""


def _timeout(signum, frame):  # noqa: ARG001 - signal handler signature
    raise TimeoutError("the rehearsal ran past its time limit")


def _interrupted(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


class Rehearsal:
    """One run: lab, hosts, checks, cleanup."""

    def __init__(self, topology: Topology, policy: Policy, workdir: Path, python: str) -> None:
        self.topology = topology
        self.policy = policy
        self.workdir = workdir
        self.python = python
        self.lab = Lab(topology, f"{PREFIX}{secrets.token_hex(2)}")
        self.fs = {name: HostFs(workdir / "hosts" / name, REPO) for name in topology.hosts}
        self.volumes = DataVolumes(workdir)
        self.created_user = False
        self.env: dict[str, str] = {}  # provision.sh's environment, set by provision()

    # -- building ------------------------------------------------------------------
    def build_network(self) -> None:
        self.lab.build()
        for host in self.topology.hosts.values():
            rules = self.workdir / f"{host.name}.nft"
            rules.write_text(ruleset(host, self.topology))
            run("nft", "-f", str(rules), ns=self.lab.ns(host.name))
        print(f"network: {len(self.topology.hosts)} hosts on {len(self.topology.public_subnets)} public and "
              f"{len(self.topology.private_subnets)} private subnets, internet client {INTERNET_CLIENT}, "
              f"firewalls from {len(self.topology.rules)} security-group rules")

    def provision(self) -> None:
        secret_dir = self.workdir / "secrets"
        secret_dir.mkdir(mode=0o700)
        for name in SECRET_NAMES:
            path = secret_dir / name
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        (secret_dir / "host_lists").write_text(self.topology.host_lists + "\n")  # not secret; SSM all the same
        try:
            pwd.getpwnam("pneumonia")
        except KeyError:
            self.created_user = True  # provision.sh creates it, as on AWS; removed at the end
        self.env = {**os.environ, "PATH": f"/opt/pneumonia/deploy/rehearsal:{os.environ['PATH']}",
                    "PROVISION_OFFLINE": "1", "PROVISION_SECRETS_DIR": str(secret_dir),
                    "PROVISION_MODEL_DIR": "/opt/pneumonia/models"}
        no_loop_devices = DataVolumes.unavailable()
        if no_loop_devices:
            print(f"data volumes: no loop device here ({no_loop_devices}); Redis and Prometheus write to the "
                  "hosts' disks")
        for host in sorted(self.topology.hosts.values(), key=lambda h: ROLE_ORDER.index(h.role)):
            fs = self.fs[host.name]
            fs.prepare()
            settings = re.search(r"cat >/etc/pneumonia/host.env <<'SETTINGS'\n(.*?)\nSETTINGS", host.user_data, re.S)
            if settings is None:
                raise RehearsalFailed(f"{host.name}: no host.env in its rendered user_data")
            host_env = settings.group(1)
            if re.search(r"^DATA_VOLUME_ID=.", host_env, re.M):  # a loop device stands in for the EBS volume
                volume_id = "" if no_loop_devices else self.volumes.attach(host.name)
                host_env = re.sub(r"^DATA_VOLUME_ID=.*$", f"DATA_VOLUME_ID={volume_id}", host_env, flags=re.M)
            (fs.root / "etc/pneumonia/host.env").write_text(host_env + "\n")
            started = time.monotonic()
            log = self.workdir / f"provision-{host.name}.log"
            with log.open("w") as out:
                argv = fs.enter(self.lab.ns(host.name), ["/opt/pneumonia/deploy/provision/provision.sh"])
                done = subprocess.run(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode:
                tail = "\n".join(log.read_text().splitlines()[-25:])
                raise RehearsalFailed(f"provisioning {host.name} failed ({done.returncode}):\n{tail}")
            print(f"provisioned {host.name:<11} ({host.role}, {host.ip}) with provision.sh "
                  f"in {time.monotonic() - started:.1f}s")

    # -- checks --------------------------------------------------------------------
    def probe(self) -> list[Flow]:
        planned = flows(self.topology, self.policy, INTERNET_CLIENT.split("/")[0])
        results: list[Flow] = []
        for source in sorted({f.source for f in planned}):
            mine = [f for f in planned if f.source == source]
            ns = self.lab.internet if source == "internet" else self.lab.ns(source)
            done = run(self.python, "-m", "scripts.rehearsal.probe", "1.0", ns=ns, cwd=REPO,
                       input=json.dumps([[f.dest.ip, f.port] for f in mine]))
            observed = {(ip, port): result for ip, port, result in json.loads(done.stdout)}
            results += [Flow(f.source, f.dest, f.port, f.policy, f.security_groups, observed[(f.dest.ip, f.port)])
                        for f in mine]
        return results

    def _wait_http(self, host: Host, url: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while run("curl", "-fsS", "-o", "/dev/null", "-m", "3", url, ns=self.lab.ns(host.name),
                  check=False).returncode:
            if time.monotonic() > deadline:
                raise RehearsalFailed(f"{url} on {host.name} not answering after {seconds:.0f}s")
            time.sleep(0.5)

    def _host(self, role: str) -> Host:
        return next(h for h in self.topology.hosts.values() if h.role == role)

    def _admin_cli(self, *args: str, stdin: str = "") -> str:
        ui = self._host("ui")
        done = subprocess.run(self.fs[ui.name].enter(self.lab.ns(ui.name), ["/usr/local/bin/pneumonia-admin", *args]),
                              input=stdin, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode:
            raise RehearsalFailed(f"pneumonia-admin {' '.join(args)} failed on {ui.name}: {done.stderr.strip()}")
        return done.stdout

    def doctor_path(self) -> None:
        for api in (h for h in self.topology.hosts.values() if h.role == "api"):
            self._wait_http(api, "http://127.0.0.1:5000/readyz", 120)
        nginx = self._host("nginx")
        self._wait_http(nginx, "http://127.0.0.1/healthz", 30)  # answered by the redirect to HTTPS
        password = secrets.token_urlsafe(16)
        self._admin_cli("users", "create", "rehearsal-doctor", "--password-stdin", stdin=password + "\n")
        token = self._admin_cli("tokens", "create", "rehearsal").rsplit(": ", 1)[-1].strip()
        certificate = self.fs[nginx.name].root / "etc/nginx/tls/pneumonia.crt"  # the one made at provisioning
        done = run(self.python, "-m", "scripts.rehearsal.doctor", f"https://{nginx.ip}/", "rehearsal-doctor",
                   password, token, str(DOCTOR_IMAGE), str(certificate), ns=self.lab.internet, cwd=REPO, check=False)
        print(f"doctor's path (internet -> Nginx over HTTPS -> UI -> API -> Redis): "
              f"{done.stdout.strip() or done.stderr[-500:]}")
        if done.returncode:
            raise RehearsalFailed("the doctor's path failed")

    def scrapes(self, seconds: float = 120) -> None:
        monitoring = self._host("monitoring")
        deadline = time.monotonic() + seconds
        while True:
            targets = self._prometheus(monitoring, "targets").get("activeTargets", [])
            health = {f"{t['labels']['job']} {t['labels']['instance']}": t["health"] for t in targets}
            if health and set(health.values()) == {"up"} and len(health) >= len(self.topology.hosts) + 6:
                break
            state = self._service_state(monitoring, "prometheus.service")
            if state != "running" or time.monotonic() > deadline:  # an exited Prometheus will not come back
                what = f"targets not all up after {seconds:.0f}s: {health}" if state == "running" else "not running"
                raise RehearsalFailed(f"Prometheus on {monitoring.name} {what}\n"
                                      f"{self._service_report(monitoring, 'prometheus.service', state)}")
            time.sleep(2)
        print(f"Prometheus on {monitoring.name} scrapes {len(health)} targets over the private addresses, all up:")
        for name in sorted(health):
            print(f"  {name}")
        self._edge_counted(monitoring, deadline)
        self._alerts_routed(monitoring, deadline)

    def _edge_counted(self, monitoring: Host, deadline: float) -> None:
        """The doctor's requests went edge log -> mtail -> Prometheus (Nginx's answers by status)."""
        query = "sum by (side, status) (nginx_edge_responses_total)"
        while True:
            answer = self._prometheus(monitoring, "query", "--get", "--data-urlencode", f"query={query}")
            result = answer.get("result", [])
            counts = {f"{r['metric']['side']} {r['metric']['status']}": float(r["value"][1]) for r in result}
            if sum(counts.values()) > 0:
                break
            if time.monotonic() > deadline:
                raise RehearsalFailed(f"no Nginx answer reached Prometheus through mtail: {counts}")
            time.sleep(2)
        print("Nginx's answers so far, counted by mtail on the Nginx host (side status: count): "
              + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(counts.items())))

    def _alerts_routed(self, monitoring: Host, deadline: float) -> None:
        """Prometheus sends its alerts to the Alertmanager beside it, which publishes them to the SNS topic."""
        while not (active := self._prometheus(monitoring, "alertmanagers").get("activeAlertmanagers")):
            if time.monotonic() > deadline:
                raise RehearsalFailed(f"Prometheus on {monitoring.name} has no Alertmanager\n"
                                      f"{self._service_report(monitoring, 'prometheus-alertmanager.service', 'see')}")
            time.sleep(2)
        config = json.loads((self.fs[monitoring.name].root / "etc/prometheus/alertmanager.yml").read_text())
        topics = [c["topic_arn"] for r in config["receivers"] for c in r.get("sns_configs", [])]
        if len(topics) != 1:
            raise RehearsalFailed(f"Alertmanager on {monitoring.name} should publish to one SNS topic: {topics}")
        print(f"Prometheus sends its alerts to {active[0]['url']}, which publishes them to the SNS topic "
              f"({topics[0]})")

    def data_volumes(self) -> None:
        """Each service with a data volume writes to it: its folder is the volume's mount, not the disk."""
        for name, device in self.volumes.devices.items():
            host = self.topology.hosts[name]
            folder, unit = DATA_VOLUME_USERS[host.role]
            if self._service_state(host, unit) != "running":
                raise RehearsalFailed(self._service_report(host, unit, self._service_state(host, unit)))
            pid_file = self.fs[name].root / f"run/rehearsal-units/{unit}.pid"
            inside = ["nsenter", f"--target={pid_file.read_text().strip()}", "--mount", "--"]
            mounts = run(*inside, "findmnt", "--noheadings", "--output", "SOURCE", folder, check=False).stdout.split()
            source = mounts[-1] if mounts else ""  # the topmost of the mounts stacked there
            listing = run(*inside, "ls", folder, check=False).stdout.split()
            if source != device or not [entry for entry in listing if entry != "lost+found"]:
                raise RehearsalFailed(f"{unit} on {name}: {folder} is on {source or 'the host disk'} "
                                      f"(holding {listing}), not on its data volume {device}")
            print(f"data volume of {name}: {folder} on {device} (a stand-in EBS volume), {unit} wrote "
                  + ", ".join(entry for entry in listing if entry != "lost+found"))

    def host_lists(self) -> None:
        """Another API host in the SSM host lists reaches Nginx, the UI and Prometheus through
        ``provision.sh refresh`` (what pneumonia-host-lists.timer runs every minute; run here by hand),
        with no host re-created; the original lists come back the same way."""
        lists = self.workdir / "secrets/host_lists"
        original = lists.read_text()
        api = self._host("api")
        extra = f"{ipaddress.ip_address(api.ip) + 50}:5000"
        seen = {  # where each role's provisioning puts the API addresses
            "nginx": ("etc/nginx/conf.d/pneumonia.conf", f"server {extra};"),
            "ui": ("etc/pneumonia/ui.env", f"http://{extra}"),
            "monitoring": ("etc/prometheus/targets/api.json", f'"{extra}"'),
        }
        ui = self._host("ui")
        ui_pid = self.fs[ui.name].root / "run/rehearsal-units/pneumonia-ui.service.pid"
        for step, text in (("added", re.sub(r"^(API_(?:SERVERS|TARGETS)=.*)$", rf"\1 {extra}", original,
                                            flags=re.M)), ("removed", original)):
            lists.write_text(text)
            for role, (path, needle) in seen.items():
                host = self._host(role)
                before = ui_pid.read_text() if role == "ui" else ""
                code, output = self._refresh(host)
                present = needle in (self.fs[host.name].root / path).read_text()
                if code or present != (step == "added"):
                    raise RehearsalFailed(f"refresh on {host.name} ({step} {extra}): exit {code}, "
                                          f"{path} {'names' if present else 'lacks'} it\n{output[-1500:]}")
                if role == "ui" and ui_pid.read_text() == before:
                    raise RehearsalFailed(f"refresh on {host.name}: the UI was not restarted with the new addresses")
            self._wait_http(self._host("nginx"), "http://127.0.0.1/healthz", 30)
            self._wait_http(ui, "http://127.0.0.1:5001/healthz", 60)
        print(f"host lists: another API host ({extra}) in SSM reached Nginx, the UI and Prometheus through "
              "`provision.sh refresh` and left again, no host re-created")
        self._lists_applied(time.monotonic() + 60)

    def _refresh(self, host: Host) -> tuple[int, str]:
        """``provision.sh refresh`` on ``host``: its exit status and output."""
        argv = self.fs[host.name].enter(self.lab.ns(host.name), ["/opt/pneumonia/deploy/provision/provision.sh", "refresh"])
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout + done.stderr

    def _lists_applied(self, deadline: float) -> None:
        """Each host that reads the host lists reports when it applied them (node_exporter's textfile
        collector), which alert HostListsStale watches."""
        query = "pneumonia_host_lists_applied_timestamp_seconds"
        while True:
            answer = self._prometheus(self._host("monitoring"), "query", "--get", "--data-urlencode", f"query={query}")
            roles = sorted(r["metric"].get("role", "") for r in answer.get("result", []))
            if roles == ["monitoring", "nginx", "ui"]:
                break
            if time.monotonic() > deadline:
                raise RehearsalFailed(f"{query} from {roles or 'no host'}, expected Nginx, the UI and monitoring")
            time.sleep(2)
        print(f"{query}: reported by {', '.join(roles)} (node_exporter's textfile collector)")

    def _prometheus(self, monitoring: Host, path: str, *curl_args: str) -> dict:
        """The ``data`` of Prometheus's ``/api/v1/<path>`` on the monitoring host; empty while it does not answer."""
        done = run("curl", "-fsS", "-m", "5", *curl_args, f"http://127.0.0.1:9090/api/v1/{path}",
                   ns=self.lab.ns(monitoring.name), check=False)
        return json.loads(done.stdout)["data"] if done.returncode == 0 else {}

    def _service_state(self, host: Host, unit: str) -> str:
        """``running``, ``exited`` or ``never started``, from the systemctl stand-in's PID file."""
        pid_file = self.fs[host.name].root / f"run/rehearsal-units/{unit}.pid"
        if not pid_file.is_file():
            return "never started"
        return "running" if Path(f"/proc/{pid_file.read_text().strip()}").exists() else "exited"

    def _service_report(self, host: Host, unit: str, state: str, lines: int = 15) -> str:
        """``unit``'s state on ``host`` and the end of its log."""
        log = self.fs[host.name].root / f"var/log/rehearsal/{unit}.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []
        return "\n".join([f"{unit} on {host.name}: {state}; the end of its log:", *(tail or ["(empty)"])])

    # -- cleanup -------------------------------------------------------------------
    def destroy(self) -> None:
        self.lab.destroy()
        self.volumes.destroy()
        for fs in self.fs.values():
            fs.remove_mount_points()
        if self.created_user:
            subprocess.run(["userdel", "pneumonia"], capture_output=True, check=False)


def report(results: list[Flow]) -> list[Flow]:
    """Print the matrix and the mismatches; return the mismatches."""
    print("\nflow matrix (TCP connection attempts from each namespace):")
    print(matrix(results))
    wrong = [f for f in results if not f.ok]
    allowed = sum(f.policy for f in results)
    print(f"\n{len(results)} flows probed: {allowed} allowed by the policy, {len(results) - allowed} denied; "
          f"{len(wrong)} mismatches")
    for flow in wrong:
        kind = "UNEXPECTED FLOW" if flow.passed_firewall else "MISSING FLOW"
        print(f"  {kind}: {flow.describe()}")
    drift = [f for f in results if f.policy != f.security_groups]
    for flow in drift:
        print(f"  terraform/ disagrees with deploy/network_policy.yml: {flow.describe()}")
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.rehearsal", description=__doc__.splitlines()[0])
    parser.add_argument("--terraform", type=Path, default=REPO / "terraform", help="the Terraform folder to rehearse")
    parser.add_argument("--policy", type=Path, default=None, help="the network policy (deploy/network_policy.yml)")
    parser.add_argument("--matrix-only", action="store_true",
                        help="network, firewalls and the flow matrix only (no provisioning)")
    parser.add_argument("--time-limit", type=int, default=480, help="seconds before it gives up and cleans up")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, also through a pipe
    try:
        preflight()
    except LabError as exc:
        print(f"rehearsal cannot run here: {exc}", file=sys.stderr)
        return 2
    for stale in leftover_namespaces(PREFIX):  # a run killed with SIGKILL leaves these behind
        run("ip", "netns", "del", stale, check=False)
    topology = load(args.terraform)
    policy = Policy.load(args.policy) if args.policy else Policy.load()
    signal.signal(signal.SIGALRM, _timeout)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.alarm(args.time_limit)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        rehearsal = Rehearsal(topology, policy, Path(tmp), sys.executable)
        try:
            rehearsal.build_network()
            if not args.matrix_only:
                rehearsal.provision()
                rehearsal.doctor_path()
            wrong = report(rehearsal.probe())
            if not args.matrix_only:
                rehearsal.scrapes()
                rehearsal.data_volumes()
                rehearsal.host_lists()
            if wrong:
                raise RehearsalFailed(f"{len(wrong)} flows differ from the policy (see above)")
        except (RehearsalFailed, LabError, TimeoutError) as exc:
            print(f"\nREHEARSAL FAILED: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nrehearsal interrupted; removing everything it created", flush=True)
            return 130
        finally:
            signal.alarm(0)
            rehearsal.destroy()
    print(f"\nrehearsal passed in {time.monotonic() - started:.0f}s; every namespace and process removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
