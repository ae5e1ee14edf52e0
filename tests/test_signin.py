"""Sign-in, roles and the audit trail through the real stack (Nginx -> UI -> API -> Redis)."""

from __future__ import annotations

import json
import re
import time

import requests

from scripts.stack import Stack
from tests.helpers import ACCOUNTS, csrf_token, fixture_images, sign_in

XRAY = fixture_images()[0][0]


def _try_sign_in(stack: Stack, username: str, password: str) -> requests.Response:
    session = requests.Session()
    token = csrf_token(session.get(stack.config.url + "sign-in", timeout=10).text)
    return session.post(stack.config.url + "sign-in", timeout=30,
                        data={"csrf_token": token, "username": username, "password": password})


def _upload(stack: Stack, session: requests.Session) -> str:
    token = csrf_token(session.get(stack.config.url, timeout=10).text)
    resp = session.post(stack.config.url + "predict", data={"csrf_token": token},
                        files={"file": (XRAY.name, XRAY.read_bytes(), "image/jpeg")}, timeout=60)
    assert resp.status_code == 200, resp.text[:300]
    return re.search(r'id="result-id">([0-9a-f]{32})<', resp.text).group(1)


def _audit(stack: Stack, **filters: str) -> list[dict]:
    admin = sign_in(stack.config.url, "admin")
    export = admin.get(stack.config.url + "admin/audit/export", timeout=30)
    assert export.status_code == 200
    events = [json.loads(line) for line in export.text.splitlines()]
    return [e for e in events if all(e.get(k) == v for k, v in filters.items())]


def test_pages_demand_sign_in_and_health_does_not(stack: Stack) -> None:
    for path in ("", "results", "admin/users", "admin/audit"):
        resp = requests.get(stack.config.url + path, timeout=10, allow_redirects=False)
        assert resp.status_code == 302 and "/sign-in" in resp.headers["Location"], path
    assert requests.get(stack.config.url + "healthz", timeout=10).status_code == 200
    cookie = requests.get(stack.config.url + "sign-in", timeout=10).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_wrong_password_and_unknown_user_look_the_same(stack: Stack) -> None:
    wrong, unknown = _try_sign_in(stack, "bob", "not-bobs-password"), _try_sign_in(stack, "nobody-x", "whatever-pw")
    assert wrong.status_code == unknown.status_code == 401
    message = re.compile(r'id="signin-error">([^<]+)<')
    assert message.search(wrong.text).group(1) == message.search(unknown.text).group(1) == "wrong username or password"
    assert {"user:bob", "user:nobody-x"} <= {e["actor"] for e in _audit(stack, action="sign_in", outcome="failed")}


def test_lock_out_after_repeated_failures(stack: Stack) -> None:
    created = stack.cli("users", "create", "carol", "--password-stdin", stdin="carol-password-for-tests\n")
    assert created.returncode == 0, created.stderr
    for _ in range(5):
        assert _try_sign_in(stack, "carol", "wrong-password!").status_code == 401
    locked = _try_sign_in(stack, "carol", "carol-password-for-tests")
    assert locked.status_code == 429 and "too many failed sign-ins" in locked.text
    assert _audit(stack, actor="user:carol", action="sign_in", outcome="locked")


def test_clinician_cannot_open_another_clinicians_result_admin_can(stack: Stack) -> None:
    alice, bob, admin = (sign_in(stack.config.url, name) for name in ("alice", "bob", "admin"))
    result_id = _upload(stack, alice)
    denied = bob.get(stack.config.url + f"results/{result_id}", timeout=10)
    assert denied.status_code == 404 and result_id not in denied.text
    assert result_id not in bob.get(stack.config.url + "results", timeout=10).text
    seen = admin.get(stack.config.url + f"results/{result_id}", timeout=10)
    assert seen.status_code == 200 and result_id in seen.text
    assert "user:alice" in admin.get(stack.config.url + "results", timeout=10).text
    prediction = _audit(stack, action="prediction", target=result_id)
    assert prediction and prediction[0]["actor"] == "user:alice" and prediction[0]["address"] == "127.0.0.1"
    views = {(e["actor"], e["outcome"]) for e in _audit(stack, action="result_viewed", target=result_id)}
    assert {("user:bob", "denied"), ("user:admin", "ok")} <= views


def test_admin_pages_are_for_admins(stack: Stack) -> None:
    alice, admin = sign_in(stack.config.url, "alice"), sign_in(stack.config.url, "admin")
    assert alice.get(stack.config.url + "admin/users", timeout=10).status_code == 403
    page = admin.get(stack.config.url + "admin/users", timeout=10)
    created = admin.post(stack.config.url + "admin/users", timeout=30,
                         data={"csrf_token": csrf_token(page.text), "username": "dave", "role": "clinician"})
    password = re.search(r"one-time password: (\S+)</p>", created.text).group(1)
    sign_in(stack.config.url, "dave", password)
    audit = admin.get(stack.config.url + "admin/audit", params={"actor": "user:admin", "action": "account_created"},
                      timeout=10)
    assert audit.status_code == 200 and "dave" in audit.text


def test_session_expires_when_idle_and_ends_at_sign_out(stack: Stack) -> None:
    session = sign_in(stack.config.url, "alice")
    time.sleep(int(stack.config.extra_env["SESSION_IDLE_SECONDS"]) + 1)
    expired = session.get(stack.config.url, timeout=10)
    assert "/sign-in" in expired.url and "session has ended" in expired.text
    session = sign_in(stack.config.url, "alice")
    cookies = session.cookies.copy()
    token = csrf_token(session.get(stack.config.url, timeout=10).text)
    assert session.post(stack.config.url + "sign-out", data={"csrf_token": token}, timeout=10).status_code == 200
    replayed = requests.get(stack.config.url, cookies=cookies, timeout=10, allow_redirects=False)
    assert replayed.status_code == 302 and "/sign-in" in replayed.headers["Location"]


def test_admin_cli_accounts_and_integration_tokens(stack: Stack) -> None:
    listing = stack.cli("users", "list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in ACCOUNTS)
    assert stack.cli("users", "disable", "bob").returncode == 0
    assert _try_sign_in(stack, "bob", ACCOUNTS["bob"][1]).status_code == 401
    assert stack.cli("users", "enable", "bob").returncode == 0
    sign_in(stack.config.url, "bob")
    created = stack.cli("tokens", "create", "pacs-gateway")
    token = created.stdout.rsplit(": ", 1)[-1].strip()
    url = stack.config.url + "api/predict"
    made = requests.post(url, files={"file": XRAY.read_bytes()}, headers={"Authorization": f"Bearer {token}"},
                         timeout=60)
    assert made.status_code == 200 and made.json()["owner"] == "token:pacs-gateway"
    assert _audit(stack, actor="token:pacs-gateway", action="prediction")[0]["target"] == made.json()["id"]
    assert stack.cli("tokens", "revoke", "pacs-gateway").returncode == 0
    again = requests.post(url, files={"file": XRAY.read_bytes()}, headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
    assert again.status_code == 401
    changes = {e["action"] for e in _audit(stack) if e["actor"].startswith("service:cli-")}
    assert {"account_created", "account_disabled", "account_enabled", "token_created", "token_revoked"} <= changes


def test_model_loads_are_audited(stack: Stack) -> None:
    loads = _audit(stack, actor="service:api", action="model_loaded")
    assert len(loads) >= stack.config.api_workers and "mobilenetv2" in loads[0]["detail"]
