"""Fixtures: a real redis-server, a tiny model trained once on the fixture X-rays, the whole stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import redis

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from scripts.stack import Stack, StackConfig  # noqa: E402
from tests.helpers import ACCOUNTS, REPO, XRAYS, free_port, stop, wait_for  # noqa: E402

pytest_plugins = ("tests.diagnostics", "pytester")


class RedisServer:
    """A real redis-server on a free loopback port with a password."""

    def __init__(self, workdir: Path, password: str = "test-redis-password") -> None:
        self.workdir = workdir
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--dir", str(self.workdir), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), 15, "redis-server")

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)

@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server per test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for a test module (its tests empty it as they need)."""
    server = RedisServer(tmp_path_factory.mktemp("module_redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout root whose train/ split is the 16 fixture X-rays."""
    root = tmp_path_factory.mktemp("tiny_data")
    shutil.copytree(XRAYS, root / "train")
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MobileNetV2 model trained for one epoch at 96 px by ``model.cnn``."""
    from model import cnn

    out = tmp_path_factory.mktemp("tiny_model")
    code = cnn.main(["--data", str(tiny_dataset), "--output", str(out), "--backbone", "mobilenetv2",
                     "--weights", "none", "--input-size", "96", "--epochs", "1", "--batch-size", "8",
                     "--learning-rate", "1e-3", "--val-fraction", "0.3"])
    assert code == 0
    return out / "best_model.keras"


@pytest.fixture(scope="session")
def tiny_model_with_statistics(tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``tiny_model`` (model, metadata, ONNX) with its atypicality statistics fitted."""
    from model.atypicality import fit_model

    out = tmp_path_factory.mktemp("tiny_model_with_statistics") / tiny_model.name
    for suffix in (".keras", ".json", ".onnx"):
        shutil.copy(tiny_model.with_suffix(suffix), out.with_suffix(suffix))
    fit_model(out, tiny_dataset)
    return out


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The model committed under ``models/`` (what the API and ``make up`` serve)."""
    path = Path(os.environ.get("MODEL_PATH", REPO / "models" / "best_model.keras"))
    assert path.is_file(), f"shipped model missing: {path}"
    return path


PORTS = ("http_port", "api_port", "ui_port", "redis_port", "prometheus_port", "alertmanager_port",
         "node_exporter_port", "redis_exporter_port", "nginx_exporter_port", "nginx_status_port", "edge_metrics_port")


# A short idle timeout so that a test can watch a session expire; a per-address sign-in limit
# above the failures the whole suite makes from 127.0.0.1 (the per-address lock-out has its own test).
# AUDIT_SCAN_MAX: a query reads more events than a page of the audit view (500) but few enough that the
# browser test's trail outgrows it, so the view must say where its search stopped.
STACK_ENV = {"SESSION_IDLE_SECONDS": "12", "SIGNIN_MAX_FAILURES_PER_ADDRESS": "60", "AUDIT_SCAN_MAX": "600"}


def free_ports() -> dict[str, int]:
    return {name: free_port() for name in PORTS}


@pytest.fixture(scope="session")
def stack(shipped_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Nginx's client timeouts at 8 s, not the default 15 s, so that the slow-loris test is quick. Not
    # shorter: at 3 s, Nginx once closed a flood test connection without an answer, when the suite's
    # own process sent the flood and seems to have stalled for about 3 s (now tests/flood.py sends it).
    config = StackConfig(run_dir=tmp_path_factory.mktemp("stack"), model_path=shipped_model, api_workers=2,
                         rate_limit="50r/s", rate_burst=100, scrape_interval="2s",
                         client_timeout="8s", extra_env=STACK_ENV, alert_group_wait="1s",
                         alert_webhook_url=f"http://127.0.0.1:{free_port()}/alerts", **free_ports())
    stack = Stack(config)
    stack.up()
    for name, (role, password) in ACCOUNTS.items():
        created = stack.cli("users", "create", name, "--role", role, "--password-stdin", stdin=password + "\n")
        assert created.returncode == 0, created.stderr
    yield stack
    stack.down()
