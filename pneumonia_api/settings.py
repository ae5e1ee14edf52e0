"""API configuration from environment variables (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from model.store import DEFAULT_TTL_SECONDS
from pneumonia_common.env import env_bool, env_float, env_int, env_str
from pneumonia_common.gunicorn_base import WORKER_TIMEOUT_SECONDS


@dataclass(frozen=True)
class ApiSettings:
    """Every knob of the API, with safe defaults."""

    model_path: str = "models/best_model.keras"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""
    redis_timeout_seconds: float = 0.5
    api_token: str = ""
    result_ttl_seconds: int = DEFAULT_TTL_SECONDS
    max_upload_bytes: int = 20 * 1024 * 1024
    results_limit_max: int = 200
    session_idle_seconds: int = 15 * 60
    session_max_seconds: int = 12 * 3600
    request_timeout_seconds: int = WORKER_TIMEOUT_SECONDS  # the same variable as gunicorn's timeout
    warm_heatmap: bool = True
    signin_max_failures_per_account: int = 5
    signin_max_failures_per_address: int = 20
    signin_window_seconds: int = 15 * 60
    audit_retention_days: int = 400
    audit_scan_max: int = 50_000
    agreement_scan_max: int = 50_000

    @classmethod
    def from_env(cls) -> "ApiSettings":
        return cls(
            model_path=env_str("MODEL_PATH", cls.model_path),
            redis_url=env_str("REDIS_URL", cls.redis_url),
            redis_password=env_str("REDIS_PASSWORD"),
            redis_timeout_seconds=env_float("REDIS_TIMEOUT_SECONDS", cls.redis_timeout_seconds),
            api_token=env_str("API_TOKEN"),
            result_ttl_seconds=env_int("RESULT_TTL_SECONDS", cls.result_ttl_seconds),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            session_idle_seconds=env_int("SESSION_IDLE_SECONDS", cls.session_idle_seconds),
            session_max_seconds=env_int("SESSION_MAX_SECONDS", cls.session_max_seconds),
            request_timeout_seconds=env_int("API_WORKER_TIMEOUT_SECONDS", cls.request_timeout_seconds),
            warm_heatmap=env_bool("API_WARM_HEATMAP", cls.warm_heatmap),
            signin_max_failures_per_account=env_int("SIGNIN_MAX_FAILURES_PER_ACCOUNT",
                                                    cls.signin_max_failures_per_account),
            signin_max_failures_per_address=env_int("SIGNIN_MAX_FAILURES_PER_ADDRESS",
                                                    cls.signin_max_failures_per_address),
            signin_window_seconds=env_int("SIGNIN_WINDOW_SECONDS", cls.signin_window_seconds),
            audit_retention_days=env_int("AUDIT_RETENTION_DAYS", cls.audit_retention_days),
            audit_scan_max=env_int("AUDIT_SCAN_MAX", cls.audit_scan_max),
            agreement_scan_max=env_int("AGREEMENT_SCAN_MAX", cls.agreement_scan_max),
        )
