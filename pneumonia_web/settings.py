"""UI configuration from environment variables (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from pneumonia_common.env import env_bool, env_float, env_int, env_str


@dataclass(frozen=True)
class WebSettings:
    """Every knob of the UI, with safe defaults."""

    api_urls: tuple[str, ...] = ("http://127.0.0.1:5000",)
    api_token: str = ""
    secret_key: str = ""
    api_timeout_seconds: float = 30.0
    api_connect_timeout_seconds: float = 3.0
    max_upload_bytes: int = 20 * 1024 * 1024
    secure_cookies: bool = False
    trusted_proxies: int = 1

    @classmethod
    def from_env(cls) -> "WebSettings":
        urls = env_str("API_URLS") or env_str("API_URL", cls.api_urls[0])
        return cls(
            api_urls=tuple(u.strip().rstrip("/") for u in urls.split(",") if u.strip()),
            api_token=env_str("API_TOKEN"),
            secret_key=env_str("FLASK_SECRET_KEY"),
            api_timeout_seconds=env_float("API_TIMEOUT_SECONDS", cls.api_timeout_seconds),
            api_connect_timeout_seconds=env_float("API_CONNECT_TIMEOUT_SECONDS", cls.api_connect_timeout_seconds),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            secure_cookies=env_bool("SESSION_COOKIE_SECURE", cls.secure_cookies),
            trusted_proxies=env_int("UI_TRUSTED_PROXIES", cls.trusted_proxies),
        )
