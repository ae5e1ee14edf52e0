"""The local stack: Redis, API, UI, Nginx, Prometheus, Alertmanager, exporters and mtail as real processes
on loopback.

``python -m scripts.stack up|down|status`` (``make up`` / ``make down`` / ``make status``), and
``python -m scripts.stack users|tokens ...`` (``make users ARGS=...``): the admin CLI with the stack's settings.
Configuration comes from ``deploy/`` templates, the same files the AWS user_data renders.
Every process is started in its own session with a pid file and a log in the run folder;
``down`` stops exactly those processes.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from deploy.provision.write_alertmanager import write_config as write_alertmanager_config
from deploy.provision.write_targets import write_targets

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SECRET_NAMES = ("API_TOKEN", "REDIS_PASSWORD", "FLASK_SECRET_KEY")
NGINX_WORKER_USER = "www-data"


def render(text: str, values: dict[str, str]) -> str:
    """Replace ``${NAME}`` placeholders (as ``envsubst`` does with a variable list); all must be given."""
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    leftover = [line for line in text.splitlines() if "${" in line and not line.lstrip().startswith("#")]
    if leftover:
        raise ValueError(f"unrendered placeholder in: {leftover[0].strip()}")
    return text


@dataclass
class StackConfig:
    """Ports, paths and the model of one local stack."""

    run_dir: Path = REPO / "run"
    http_port: int = 8080
    api_port: int = 5000
    ui_port: int = 5001
    redis_port: int = 6379
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    node_exporter_port: int = 9100
    redis_exporter_port: int = 9121
    nginx_exporter_port: int = 9113
    nginx_status_port: int = 8081
    edge_metrics_port: int = 3903
    model_path: Path = REPO / "models" / "best_model.keras"
    python: str = sys.executable
    api_workers: int = 2
    max_upload_mb: int = 20
    rate_limit: str = "20r/s"
    rate_burst: int = 40
    scrape_interval: str = "15s"
    client_timeout: str = "15s"
    alert_webhook_url: str = ""  # where Alertmanager sends alerts (its webhook JSON); none: kept in its API
    alert_group_wait: str = "30s"
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "StackConfig":
        env = os.environ
        port = lambda name, default: int(env.get(name, default))  # noqa: E731
        return cls(
            run_dir=Path(env.get("STACK_RUN_DIR", REPO / "run")),
            http_port=port("STACK_HTTP_PORT", 8080),
            api_port=port("API_PORT", 5000),
            ui_port=port("UI_PORT", 5001),
            redis_port=port("REDIS_PORT", 6379),
            prometheus_port=port("PROMETHEUS_PORT", 9090),
            alertmanager_port=port("ALERTMANAGER_PORT", 9093),
            node_exporter_port=port("NODE_EXPORTER_PORT", 9100),
            model_path=Path(env.get("MODEL_PATH", REPO / "models" / "best_model.keras")),
            api_workers=port("API_WORKERS", 2),
            max_upload_mb=port("MAX_UPLOAD_MB", 20),
            rate_limit=env.get("NGINX_RATE_LIMIT", "20r/s"),
            rate_burst=port("NGINX_RATE_BURST", 40),
            alert_webhook_url=env.get("ALERT_WEBHOOK_URL", ""),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"


@dataclass
class Service:
    """One process of the stack and how to tell it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return check


class Stack:
    """Render configuration, start, check and stop the local stack."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir.resolve()
        self.conf_dir = self.run_dir / "conf"
        self.log_dir = self.run_dir / "logs"
        self.edge_log = self.log_dir / "nginx-edge.log"  # written by Nginx, read by mtail
        self.pid_dir = self.run_dir / "pids"

    # -- secrets and configuration -------------------------------------------------
    def secrets(self) -> dict[str, str]:
        """From the environment when set, else generated once into ``secrets.env`` (mode 0600)."""
        path = self.run_dir / "secrets.env"
        stored: dict[str, str] = {}
        if path.exists():
            stored = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        values = {name: os.environ.get(name) or stored.get(name) or secrets.token_urlsafe(32) for name in SECRET_NAMES}
        if values != stored:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("".join(f"{k}={v}\n" for k, v in values.items()))
        return values

    def _write(self, relative: str, text: str, mode: int = 0o600) -> Path:
        path = self.conf_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def render_configs(self, secret: dict[str, str]) -> None:
        """Write every config file of the stack into ``run/conf``."""
        c = self.config
        for sub in ("logs", "pids", "redis", "prometheus-data", "alertmanager-data", "metrics/api", "metrics/ui"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._write("redis.conf", render((DEPLOY / "redis/redis.conf.tmpl").read_text(), {
            "REDIS_BIND": "127.0.0.1", "REDIS_PORT": str(c.redis_port),
            "REDIS_PASSWORD": secret["REDIS_PASSWORD"], "REDIS_DIR": str(self.run_dir / "redis"),
        }))
        self._write("pneumonia.conf", render((DEPLOY / "nginx/pneumonia.conf.tmpl").read_text(), {
            "NGINX_LISTEN": f"127.0.0.1:{c.http_port}",
            "UI_SERVERS": f"server 127.0.0.1:{c.ui_port};",
            "API_SERVERS": f"server 127.0.0.1:{c.api_port};",
            "MAX_UPLOAD_MB": str(c.max_upload_mb), "RATE_LIMIT": c.rate_limit, "RATE_BURST": str(c.rate_burst),
            "STATUS_LISTEN": f"127.0.0.1:{c.nginx_status_port}",
            "GRAFANA_LOCATION": "# Grafana is not part of the local stack (see README).",
            "CLIENT_TIMEOUT": c.client_timeout,
            "TLS_SETTINGS": "# Plain HTTP on loopback: TLS is for the public host (deploy/provision/provision.sh).",
            "HTTP_REDIRECT": "# (no HTTP-to-HTTPS redirect on loopback)",
            "EDGE_LOG": str(self.edge_log),
        }), 0o644)
        self._write("nginx.conf", self.nginx_main_config(self.run_dir), 0o644)
        prom = self.conf_dir / "prometheus"  # updated in place: a running Prometheus watches targets/
        shutil.copytree(DEPLOY / "prometheus", prom, ignore=shutil.ignore_patterns("tests", "*.md"), dirs_exist_ok=True)
        targets = {
            "prometheus": [(f"127.0.0.1:{c.prometheus_port}", "monitoring")],
            "node": [(f"127.0.0.1:{c.node_exporter_port}", "local")],
            "api": [(f"127.0.0.1:{c.api_port}", "api")],
            "ui": [(f"127.0.0.1:{c.ui_port}", "ui")],
            "redis": [(f"127.0.0.1:{c.redis_exporter_port}", "api")],
            "nginx": [(f"127.0.0.1:{c.nginx_exporter_port}", "nginx")],
            "edge": [(f"127.0.0.1:{c.edge_metrics_port}", "nginx")],
            "alertmanager": [(f"127.0.0.1:{c.alertmanager_port}", "monitoring")],
        }
        write_targets(prom / "targets", targets)
        config = prom / "prometheus.yml"
        config.write_text(config.read_text().replace("scrape_interval: 15s", f"scrape_interval: {c.scrape_interval}"))
        write_alertmanager_config(self.conf_dir / "alertmanager.yml", webhook=c.alert_webhook_url,
                                  group_wait=c.alert_group_wait)

    def nginx_main_config(self, run_dir: Path) -> str:
        """nginx.conf for an Nginx of this user that serves ``run_dir/conf/pneumonia.conf`` and
        writes its pid and logs under ``run_dir``."""
        return render((DEPLOY / "nginx/nginx-local.conf.tmpl").read_text(), {
            "RUN_DIR": str(run_dir), "NGINX_TEMP": str(self._nginx_temp()),
            "NGINX_USER_DIRECTIVE": f"user {NGINX_WORKER_USER};" if os.geteuid() == 0 else "",
        })

    def _nginx_temp(self) -> Path:
        """Where Nginx workers buffer request bodies: they drop root, so as root this is a
        folder in the system temp dir owned by the worker user (the run folder may be private)."""
        if os.geteuid() != 0:
            return self.run_dir / "nginx-tmp"
        path = Path(tempfile.gettempdir()) / f"pneumonia-nginx-{self.config.http_port}"
        path.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(path, NGINX_WORKER_USER, NGINX_WORKER_USER)
        return path

    # -- services ------------------------------------------------------------------
    def services(self, secret: dict[str, str]) -> list[Service]:
        c = self.config
        redis_url = f"redis://127.0.0.1:{c.redis_port}/0"
        gunicorn = [c.python, "-m", "gunicorn", "--config", "gunicorn_config.py", "app:app"]
        common = self._common_env(secret)
        return [
            Service("redis", ["redis-server", str(self.conf_dir / "redis.conf")], self._redis_ok),
            Service("api", gunicorn, _http_ok(f"http://127.0.0.1:{c.api_port}/readyz"), REPO / "pneumonia_api", {
                **common, "API_BIND": f"127.0.0.1:{c.api_port}", "API_WORKERS": str(c.api_workers),
                "MODEL_PATH": str(c.model_path.resolve()), "REDIS_URL": redis_url,
                "REDIS_PASSWORD": secret["REDIS_PASSWORD"],
                "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics/api"),
            }, start_timeout=180),
            Service("ui", gunicorn, _http_ok(f"http://127.0.0.1:{c.ui_port}/healthz"), REPO / "pneumonia_web", {
                **self.ui_env(secret), "UI_BIND": f"127.0.0.1:{c.ui_port}",
                "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "metrics/ui"),
            }),
            Service("nginx", ["nginx", "-p", str(self.run_dir), "-c", str(self.conf_dir / "nginx.conf"),
                              "-g", "daemon off;"], _http_ok(f"http://127.0.0.1:{c.http_port}/healthz")),
            Service("node_exporter", ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{c.node_exporter_port}"],
                    _http_ok(f"http://127.0.0.1:{c.node_exporter_port}/metrics")),
            Service("redis_exporter", ["prometheus-redis-exporter", f"-web.listen-address=127.0.0.1:{c.redis_exporter_port}",
                                       f"-redis.addr=redis://127.0.0.1:{c.redis_port}"],
                    _http_ok(f"http://127.0.0.1:{c.redis_exporter_port}/metrics"),
                    env={"REDIS_PASSWORD": secret["REDIS_PASSWORD"]}),
            Service("nginx_exporter", ["prometheus-nginx-exporter", f"-web.listen-address=127.0.0.1:{c.nginx_exporter_port}",
                                       f"-nginx.scrape-uri=http://127.0.0.1:{c.nginx_status_port}/stub_status"],
                    _http_ok(f"http://127.0.0.1:{c.nginx_exporter_port}/metrics")),
            Service("mtail", ["mtail", "--progs", str(DEPLOY / "mtail"), "--logs", str(self.edge_log),
                              "--address", "127.0.0.1", "--port", str(c.edge_metrics_port), "--logtostderr"],
                    _http_ok(f"http://127.0.0.1:{c.edge_metrics_port}/metrics")),
            # no cluster port: one Alertmanager, nothing listening beyond loopback
            Service("alertmanager", ["prometheus-alertmanager", f"--config.file={self.conf_dir / 'alertmanager.yml'}",
                                     f"--storage.path={self.run_dir / 'alertmanager-data'}",
                                     f"--web.listen-address=127.0.0.1:{c.alertmanager_port}",
                                     "--cluster.listen-address="],
                    _http_ok(f"http://127.0.0.1:{c.alertmanager_port}/-/ready")),
            Service("prometheus", ["prometheus", f"--config.file={self.conf_dir / 'prometheus/prometheus.yml'}",
                                   f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
                                   f"--web.listen-address=127.0.0.1:{c.prometheus_port}"],
                    _http_ok(f"http://127.0.0.1:{c.prometheus_port}/-/ready")),
        ]

    def _common_env(self, secret: dict[str, str]) -> dict[str, str]:
        c = self.config
        return {"API_TOKEN": secret["API_TOKEN"], "MAX_UPLOAD_BYTES": str(c.max_upload_mb * 2**20),
                "PYTHONUNBUFFERED": "1", **c.extra_env}

    def ui_env(self, secret: dict[str, str]) -> dict[str, str]:
        """What the UI (and its admin CLI) needs: the API's address and the shared secrets."""
        return {**self._common_env(secret), "API_URL": f"http://127.0.0.1:{self.config.api_port}",
                "FLASK_SECRET_KEY": secret["FLASK_SECRET_KEY"]}

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Run the admin CLI (``flask --app pneumonia_web ...``) against this stack."""
        return subprocess.run([self.config.python, "-m", "flask", "--app", "pneumonia_web", *args], cwd=REPO,
                              env={**os.environ, **self.ui_env(self.secrets())}, input=stdin, text=True,
                              capture_output=True, timeout=60, check=False)

    def ensure_admin(self) -> str | None:
        """Create the first admin (``admin``, generated password) when none exists; its password or None."""
        listing = self.cli("users", "list")
        if listing.returncode != 0:
            raise RuntimeError(f"admin CLI failed: {listing.stderr.strip()}")
        rows = [line.split() for line in listing.stdout.splitlines()]
        if any(row[1:3] == ["admin", "active"] for row in rows):
            return None
        created = self.cli("users", "create", "admin", "--role", "admin")
        if created.returncode != 0:
            raise RuntimeError(f"could not create the first admin: {created.stderr.strip()}")
        return created.stdout.rsplit(": ", 1)[-1].strip()

    def _redis_ok(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.config.redis_port, password=self.secrets()["REDIS_PASSWORD"],
                                 socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False

    def pid(self, name: str) -> int | None:
        """The pid of a running service's main process, or None."""
        try:
            pid = int((self.pid_dir / f"{name}.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def _start(self, service: Service) -> None:
        if self.pid(service.name) and service.healthy():
            print(f"  {service.name:<15} already running")
            return
        log = open(self.log_dir / f"{service.name}.log", "ab")
        env = {**os.environ, **service.env}
        proc = subprocess.Popen(service.argv, cwd=service.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        (self.pid_dir / f"{service.name}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + service.start_timeout
        while not service.healthy():
            if proc.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {proc.returncode}; see {self.log_dir / service.name}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} not healthy after {service.start_timeout:.0f}s; "
                                   f"see {self.log_dir / service.name}.log")
            time.sleep(0.2)
        print(f"  {service.name:<15} up (pid {proc.pid})")

    # -- commands ------------------------------------------------------------------
    def up(self) -> dict[str, str]:
        """Start everything that is not already running and healthy; returns the secrets."""
        if not self.config.model_path.is_file():
            raise SystemExit(f"no model at {self.config.model_path}: set MODEL_PATH or run `make train`")
        secret = self.secrets()
        self.render_configs(secret)
        print(f"starting the stack (run folder {self.run_dir})")
        try:
            for service in self.services(secret):
                self._start(service)
        except RuntimeError:
            self.down()
            raise
        return secret

    def down(self) -> None:
        """Stop every process this stack started (by pid file), newest first."""
        for service in reversed(self.services(self.secrets())):
            self.stop_service(service.name)

    def stop_service(self, name: str) -> None:
        """Stop one service and all its processes (its process group)."""
        pid = self.pid(name)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive_group(pid):
            time.sleep(0.1)
        if _alive_group(pid):
            os.killpg(pid, signal.SIGKILL)
        print(f"  {name:<15} stopped")

    def start_service(self, name: str) -> None:
        """(Re)start one service and wait until it is healthy."""
        self._start(next(s for s in self.services(self.secrets()) if s.name == name))

    def status(self) -> bool:
        """Print each service's state; True when all are healthy."""
        all_ok = True
        for service in self.services(self.secrets()):
            pid = self.pid(service.name)
            ok = bool(pid) and service.healthy()
            all_ok &= ok
            print(f"  {service.name:<15} {'healthy' if ok else 'running, unhealthy' if pid else 'stopped'}"
                  + (f" (pid {pid})" if pid else ""))
        return all_ok


def _alive_group(pgid: int) -> bool:
    """True while any process of the group lives; reaps the leader if it is our child."""
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by an earlier `make up`: init reaps it
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make up/down/status``."""
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "users", "tokens"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="for users/tokens: the admin CLI's arguments")
    args = parser.parse_args(argv)
    stack = Stack(StackConfig.from_env())
    if args.command == "up":
        try:
            stack.up()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            password = stack.ensure_admin()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"\nThe stack is up: {stack.config.url}")
        if password:
            print(f"First admin account: admin / {password}  (shown once; change it with "
                  f"`make users ARGS='reset-password admin'`)")
        print("Manage accounts and integration tokens: make users ARGS='create alice --role clinician' "
              "| ARGS=list | ARGS='disable alice'; make tokens ARGS='create pacs'")
        print(f"Prometheus: http://127.0.0.1:{stack.config.prometheus_port}/, its alerts in Alertmanager: "
              f"http://127.0.0.1:{stack.config.alertmanager_port}/api/v2/alerts"
              + ("" if stack.config.alert_webhook_url else " (set ALERT_WEBHOOK_URL to have them sent)"))
        print(f"API token and other secrets: {stack.run_dir / 'secrets.env'} (mode 0600)")
        print(f"Try: curl -H \"Authorization: Bearer $(grep ^API_TOKEN= {stack.run_dir}/secrets.env | cut -d= -f2)\" "
              f"-F file=@tests/fixtures/chest_xray/PNEUMONIA/person1946_bacteria_4874.jpeg {stack.config.url}api/predict")
        return 0
    if args.command == "down":
        stack.down()
        return 0
    if args.command in ("users", "tokens"):
        password = sys.stdin.read() if "--password-stdin" in args.args else ""
        done = stack.cli(args.command, *args.args, stdin=password)
        print(done.stdout, end="")
        print(done.stderr, end="", file=sys.stderr)
        return done.returncode
    return 0 if stack.status() else 1


if __name__ == "__main__":
    sys.exit(main())
