"""Accounts, sessions, lock-out, integration tokens and the audit trail, through the API's routes
(Flask test client) against a real redis-server and a real model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from model.store import PredictionRecord, ResultStore
from pneumonia_api import create_app
from pneumonia_api.audit import AuditLog
from pneumonia_api.settings import ApiSettings
from tests.conftest import RedisServer
from tests.helpers import fixture_images

TOKEN = "service-token-for-tests"
XRAY = fixture_images()[0][0]
PASSWORDS = {"ann": "ann-password-123", "ben": "ben-password-123", "root": "root-password-123"}


@pytest.fixture(scope="module")
def api_app(tiny_model: Path, module_redis: RedisServer):
    # no heat-map warm-up: no TensorFlow loading in the background beside the 2-s session timings
    settings = ApiSettings(model_path=str(tiny_model), redis_url=module_redis.url, redis_password=module_redis.password,
                           api_token=TOKEN, session_idle_seconds=2, session_max_seconds=3600, warm_heatmap=False,
                           signin_max_failures_per_account=3, signin_max_failures_per_address=6)
    return create_app(settings)


@pytest.fixture()
def api(api_app, module_redis: RedisServer) -> FlaskClient:
    module_redis.client().flushdb()
    client = api_app.test_client()
    for name, password in PASSWORDS.items():
        role = "admin" if name == "root" else "clinician"
        resp = _as(client, "POST", "/admin/users", actor="cli-test",
                   json={"username": name, "role": role, "password": password})
        assert resp.status_code == 201, resp.get_json()
    return client


def _as(client: FlaskClient, method: str, path: str, session: str = "", address: str = "10.0.0.7",
        actor: str = "", bearer: str = TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {bearer}", "X-Client-Address": address}
    if session:
        headers["X-Session-Id"] = session
    if actor:
        headers["X-Actor"] = actor
    return client.open(path, method=method, headers=headers, **kwargs)


def _sign_in(client: FlaskClient, name: str, password: str | None = None, address: str = "10.0.0.7"):
    return _as(client, "POST", "/auth/sign-in", address=address,
               json={"username": name, "password": PASSWORDS.get(name, "") if password is None else password})


def _session(client: FlaskClient, name: str) -> str:
    resp = _sign_in(client, name)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["session_id"]


def _audit(client: FlaskClient, **filters: str) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return _as(client, "GET", f"/admin/audit?{query}", actor="cli-test").get_json()["events"]


def test_passwords_are_argon2id_hashes(api: FlaskClient, module_redis: RedisServer) -> None:
    stored = module_redis.client().hget("pneumonia:user:ann", "password_hash")
    assert stored.startswith("$argon2id$") and PASSWORDS["ann"] not in stored


def test_sign_in_wrong_password_and_unknown_user_get_the_same_answer(api: FlaskClient) -> None:
    assert _sign_in(api, "ann").get_json()["role"] == "clinician"
    wrong, unknown = _sign_in(api, "ann", "not-her-password"), _sign_in(api, "nobody", "whatever-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"error": "wrong username or password", "status": 401}
    outcomes = [(e["actor"], e["outcome"]) for e in _audit(api, action="sign_in")]
    assert outcomes[:3] == [("user:nobody", "failed"), ("user:ann", "failed"), ("user:ann", "ok")]


def test_lock_out_per_account_even_for_unknown_names(api: FlaskClient) -> None:
    for name in ("ann", "ghost"):
        for i in range(3):  # from three addresses: the account's count, not the address's, locks
            assert _sign_in(api, name, "wrong-password-x", address=f"10.1.0.{i}").status_code == 401
        locked = _sign_in(api, name, PASSWORDS.get(name, "any-password"), address="10.2.0.1")
        assert locked.status_code == 429 and "too many" in locked.get_json()["error"]
    assert _sign_in(api, "ben", address="10.1.0.1").status_code == 200  # other accounts are not affected
    assert {e["actor"] for e in _audit(api, action="sign_in") if e["outcome"] == "locked"} == {"user:ann", "user:ghost"}


def test_lock_out_per_client_address(api: FlaskClient) -> None:
    for i in range(6):
        assert _sign_in(api, f"guess{i}", "wrong-password-x", address="203.0.113.9").status_code == 401
    assert _sign_in(api, "ben", address="203.0.113.9").status_code == 429
    assert _sign_in(api, "ben", address="198.51.100.4").status_code == 200


def test_session_idle_timeout_and_sign_out(api: FlaskClient) -> None:
    session = _session(api, "ann")
    assert _as(api, "GET", "/auth/session", session).get_json() == {"username": "ann", "role": "clinician"}
    time.sleep(2.5)
    assert _as(api, "GET", "/auth/session", session).status_code == 401
    session = _session(api, "ann")
    assert _as(api, "POST", "/auth/sign-out", session).status_code == 200
    assert _as(api, "GET", "/auth/session", session).status_code == 401
    assert [e["action"] for e in _audit(api, actor="user:ann")][:2] == ["sign_out", "sign_in"]


def test_a_request_longer_than_the_idle_timeout_keeps_the_session(api: FlaskClient, api_app,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle timeout (2 s here) runs from the end of the last request: an upload answered after
    2.5 s (a cold model) leaves the session signed in, and it still expires when really idle."""
    service = api_app.extensions["prediction_service"]
    predict = service.predict

    def slow_predict(*args, **kwargs):
        time.sleep(2.5)
        return predict(*args, **kwargs)

    monkeypatch.setattr(service, "predict", slow_predict)
    session = _session(api, "ann")
    made = _as(api, "POST", "/predict", session, data={"file": (XRAY.open("rb"), XRAY.name)})
    assert made.status_code == 200, made.get_json()
    assert _as(api, "GET", "/results", session).status_code == 200
    time.sleep(2.5)
    assert _as(api, "GET", "/results", session).status_code == 401


def test_disable_and_password_reset_end_sessions(api: FlaskClient) -> None:
    session = _session(api, "ann")
    assert _as(api, "POST", "/admin/users/ann/disable", actor="cli-test", json={}).status_code == 200
    assert _as(api, "GET", "/auth/session", session).status_code == 401
    assert _sign_in(api, "ann").status_code == 401
    _as(api, "POST", "/admin/users/ann/enable", actor="cli-test", json={})
    session = _session(api, "ann")
    answer = _as(api, "POST", "/admin/users/ann/password", actor="cli-test", json={}).get_json()
    assert len(answer["password"]) >= 12
    assert _as(api, "GET", "/auth/session", session).status_code == 401
    assert _sign_in(api, "ann", answer["password"]).status_code == 200
    actions = [e["action"] for e in _audit(api, actor="service:cli-test")]
    assert {"account_disabled", "account_enabled", "password_reset", "account_created"} <= set(actions)


def test_weak_password_and_bad_names_are_refused(api: FlaskClient) -> None:
    for body in ({"username": "carl", "role": "clinician", "password": "short"},
                 {"username": "Bad Name!", "role": "clinician"}, {"username": "carl", "role": "superuser"},
                 {"username": "ann", "role": "clinician"}):
        resp = _as(api, "POST", "/admin/users", actor="cli-test", json=body)
        assert resp.status_code == 400 and resp.get_json()["error"]


@pytest.mark.parametrize("body", [["NORMAL"], "NORMAL", 42, True], ids=["list", "string", "number", "boolean"])
def test_json_that_is_not_an_object_gets_a_400_and_changes_nothing(api: FlaskClient, body: object) -> None:
    ann = _session(api, "ann")
    made = _as(api, "POST", "/predict", ann, data={"file": (XRAY.open("rb"), XRAY.name)}).get_json()
    for path, kwargs in ((f"/results/{made['id']}/reading", {"session": ann}), ("/auth/sign-in", {}),
                         ("/admin/users", {"actor": "cli-test"}), ("/admin/tokens", {"actor": "cli-test"}),
                         ("/admin/users/ben/password", {"actor": "cli-test"})):
        resp = _as(api, "POST", path, json=body, **kwargs)
        assert resp.status_code == 400, (path, resp.status_code)
        assert resp.get_json()["error"] == f"the body must be a JSON object, not a JSON {type(body).__name__}"
    assert _as(api, "GET", f"/results/{made['id']}", ann).get_json()["reading"] == ""
    assert _as(api, "GET", "/admin/tokens", actor="cli-test").get_json()["tokens"] == []
    assert _session(api, "ben")  # the password reset did not happen


def test_clinicians_see_only_their_own_results_admins_see_all(api: FlaskClient) -> None:
    ann, ben, root = (_session(api, name) for name in ("ann", "ben", "root"))
    made = _as(api, "POST", "/predict", ann, data={"file": (XRAY.open("rb"), XRAY.name)}).get_json()
    assert made["owner"] == "user:ann"
    assert _as(api, "GET", f"/results/{made['id']}", ann).status_code == 200
    denied = _as(api, "GET", f"/results/{made['id']}", ben)
    assert denied.status_code == 404 and "label" not in denied.get_json()
    assert _as(api, "GET", f"/results/{made['id']}", root).get_json()["label"] == made["label"]
    assert [r["id"] for r in _as(api, "GET", "/results", ann).get_json()["results"]] == [made["id"]]
    assert _as(api, "GET", "/results", ben).get_json()["results"] == []
    listings = {(e["actor"], e["detail"]) for e in _audit(api, action="results_listed")}
    assert {("user:ann", "1 result of user:ann"), ("user:ben", "0 results of user:ben")} <= listings
    views = {(e["actor"], e["outcome"]) for e in _audit(api, action="result_viewed")}
    assert {("user:ann", "ok"), ("user:ben", "denied"), ("user:root", "ok")} <= views
    prediction = _audit(api, action="prediction")[0]
    assert prediction["actor"] == "user:ann" and prediction["target"] == made["id"]
    assert prediction["image_sha256"] == made["image_sha256"] and prediction["address"] == "10.0.0.7"


def test_a_clinician_records_a_reading_on_their_own_results(api: FlaskClient, module_redis: RedisServer) -> None:
    ann, ben = _session(api, "ann"), _session(api, "ben")
    made = _as(api, "POST", "/predict", ann, data={"file": (XRAY.open("rb"), XRAY.name)}).get_json()
    path = f"/results/{made['id']}/reading"
    assert _as(api, "POST", path, ann, json={"reading": "maybe"}).status_code == 400
    assert _as(api, "POST", path, ben, json={"reading": "NORMAL"}).status_code == 404  # not ben's result
    first = _as(api, "POST", path, ann, json={"reading": "normal"}).get_json()
    assert (first["reading"], first["read_by"], first["label"]) == ("NORMAL", "user:ann", made["label"])
    again = _as(api, "POST", path, ann, json={"reading": "PNEUMONIA"}).get_json()
    assert _as(api, "GET", f"/results/{made['id']}", ann).get_json()["reading"] == again["reading"] == "PNEUMONIA"
    assert module_redis.client().ttl(f"pneumonia:result:{made['id']}") > 0  # still expires with the result
    metrics = api.get("/metrics").get_data(as_text=True)
    assert f'pneumonia_readings_total{{model_label="{made["label"]}",reading="NORMAL"}} 1.0' in metrics
    assert f'model_label="{made["label"]}",reading="PNEUMONIA"' not in metrics  # a correction counts once
    details = [(e["actor"], e["outcome"], e["detail"]) for e in _audit(api, action="reading_recorded")]
    assert details[:3] == [("user:ann", "ok", f"model {made['label']}, reading PNEUMONIA (was NORMAL)"),
                           ("user:ann", "ok", f"model {made['label']}, reading NORMAL"), ("user:ben", "denied", "")]
    module_redis.client().delete(f"pneumonia:result:{made['id']}")  # expired
    assert _as(api, "POST", path, ann, json={"reading": "NORMAL"}).status_code == 404
    assert not module_redis.client().exists(f"pneumonia:result:{made['id']}")
    assert ResultStore(module_redis.client()).set_reading(made["id"], "NORMAL", "user:ann") is None  # expired since
    assert not module_redis.client().exists(f"pneumonia:result:{made['id']}")  # not re-created without a TTL


def test_admins_see_how_the_results_agree_with_the_readings(api: FlaskClient, module_redis: RedisServer) -> None:
    ann = _session(api, "ann")
    films = [path for path, _ in fixture_images()[::4]][:4]
    made = [_as(api, "POST", "/predict", ann, data={"file": (path.open("rb"), path.name)}).get_json() for path in films]
    readings = ["NORMAL", "PNEUMONIA", "PNEUMONIA"]  # the fourth result is never read
    for result, reading in zip(made, readings):
        assert _as(api, "POST", f"/results/{result['id']}/reading", ann, json={"reading": reading}).status_code == 200
    ResultStore(module_redis.client()).save(PredictionRecord(  # an earlier model's result, read
        label="PNEUMONIA", probability=0.9, threshold=0.5, model_version="earlier-model", image_sha256="0" * 64,
        reading="NORMAL"))
    assert _as(api, "GET", "/admin/agreement", ann).status_code == 403

    answer = _as(api, "GET", "/admin/agreement", actor="cli-test").get_json()
    assert (answer["class_names"], answer["results_scanned"], answer["complete"]) == (["NORMAL", "PNEUMONIA"], 4, True)
    served, earlier = answer["models"]
    called = [r["label"] == "PNEUMONIA" for r in made[:3]]
    read = [r == "PNEUMONIA" for r in readings]
    assert (served["model_version"], served["served"], served["read"]) == (made[0]["model_version"], True, 3)
    assert served["confusion_matrix"] == {"tp": sum(c and r for c, r in zip(called, read)),
                                          "fp": sum(c and not r for c, r in zip(called, read)),
                                          "tn": sum(not c and not r for c, r in zip(called, read)),
                                          "fn": sum(not c and r for c, r in zip(called, read))}
    assert (served["read_positive"], served["read_negative"], served["rule_threshold"]) == (2, 1, None)
    assert (earlier["model_version"], earlier["served"], earlier["threshold"]) == ("earlier-model", False, 0.5)
    assert earlier["confusion_matrix"] == {"tp": 0, "fp": 1, "tn": 0, "fn": 0}
    assert _audit(api, action="agreement_viewed")[0]["detail"] == "4 readings"

    api.application.config["AGREEMENT_SCAN_MAX"] = 2
    try:  # only the newest read results are read, and the answer says so
        partial = _as(api, "GET", "/admin/agreement", actor="cli-test").get_json()
    finally:
        api.application.config["AGREEMENT_SCAN_MAX"] = ApiSettings.agreement_scan_max
    assert (partial["results_scanned"], partial["complete"]) == (2, False)


def test_results_with_a_reading_are_indexed_and_older_readings_indexed_once(module_redis: RedisServer) -> None:
    """The Agreement page reads the read results' index, not every result: set_reading and save index them,
    and a store written before the index existed has its read results indexed by index_readings, once."""
    client = module_redis.client()
    client.flushdb()
    store = ResultStore(client)
    records = [PredictionRecord(label="NORMAL", probability=0.1, threshold=0.5, model_version="v",
                                image_sha256="0" * 64) for _ in range(4)]
    for record in records:
        store.save(record)
        time.sleep(0.002)  # distinct creation times
    store.set_reading(records[1].id, "PNEUMONIA", "user:ann")
    store.set_reading(records[3].id, "NORMAL", "user:ann")
    imported = PredictionRecord(label="PNEUMONIA", probability=0.9, threshold=0.5, model_version="v",
                                image_sha256="1" * 64, reading="PNEUMONIA")  # read before it was stored (an import)
    store.save(imported)
    assert [r.id for r in store.read(10)] == [imported.id, records[3].id, records[1].id]
    assert (store.count(read=True), [r.id for r in store.read(2)]) == (3, [imported.id, records[3].id])
    assert client.zscore(store.read_index_key, records[1].id) == client.zscore(store.index_key, records[1].id)

    client.delete(store.read_index_key)  # as a store written before the index existed
    assert store.index_readings(chunk=2) == 3 and store.index_readings() == 0
    assert [r.id for r in store.read(10)] == [imported.id, records[3].id, records[1].id]


def test_clinicians_cannot_administer(api: FlaskClient) -> None:
    ann = _session(api, "ann")
    for method, path in (("GET", "/admin/users"), ("GET", "/admin/audit"), ("POST", "/admin/tokens")):
        assert _as(api, method, path, ann, json={}).status_code == 403


def test_integration_tokens_are_audited_scoped_and_revocable(api: FlaskClient) -> None:
    token = _as(api, "POST", "/admin/tokens", actor="cli-test", json={"name": "pacs"}).get_json()["token"]
    made = _as(api, "POST", "/predict", bearer=token, data={"file": (XRAY.open("rb"), XRAY.name)}).get_json()
    assert made["owner"] == "token:pacs"
    other = _as(api, "POST", "/predict", _session(api, "ann"), data={"file": (XRAY.open("rb"), XRAY.name)}).get_json()
    assert _as(api, "GET", f"/results/{other['id']}", bearer=token).status_code == 404
    assert [r["id"] for r in _as(api, "GET", "/results", bearer=token).get_json()["results"]] == [made["id"]]
    assert _as(api, "POST", "/auth/sign-in", bearer=token, json={"username": "ann"}).status_code == 403
    assert _as(api, "GET", "/admin/users", bearer=token).status_code == 403
    assert _audit(api, actor="token:pacs", action="prediction")[0]["target"] == made["id"]
    assert _as(api, "DELETE", "/admin/tokens/pacs", actor="cli-test").status_code == 200
    assert _as(api, "GET", "/results", bearer=token).status_code == 401


def test_audit_trail_pages_back_without_gaps(api: FlaskClient) -> None:
    ann = _session(api, "ann")
    for _ in range(5):
        assert _as(api, "GET", "/results", ann).status_code == 200
    newest = _audit(api, action="results_listed", limit="4")
    first = _audit(api, action="results_listed", limit="2")
    second = _audit(api, action="results_listed", limit="2", before=first[-1]["id"])
    assert [e["id"] for e in first + second] == [e["id"] for e in newest]
    assert _audit(api, action="results_listed", before="1-0") == []
    for bad in ("yesterday", "1795800000000", "1-0-0"):
        resp = _as(api, "GET", f"/admin/audit?before={bad}", actor="cli-test")
        assert resp.status_code == 400 and "audit event id" in resp.get_json()["error"]


def test_audit_search_says_where_it_stopped(module_redis: RedisServer) -> None:
    """A filter that matches nothing among the events one query may read gives the id to go on from."""
    audit = AuditLog(module_redis.client(), retention_days=1, key="test:audit:scan", scan_max=3)
    audit.record("user:early", "sign_in")
    for _ in range(4):
        audit.record("user:late", "sign_in")
    events, resume = audit.query(actor="user:early")  # reads the three newest events only
    assert events == [] and resume is not None
    events, rest = audit.query(actor="user:early", before=resume)
    assert [e.actor for e in events] == ["user:early"] and rest is None  # read back to the start
    page, after = audit.query(limit=2)
    assert [e.actor for e in page] == ["user:late"] * 2 and after == page[-1].id


def test_audit_since_before_the_epoch_means_from_the_start(api: FlaskClient) -> None:
    """Stream ids start at the epoch: an earlier ``since`` (any valid ISO date) is the whole trail, not an
    error from Redis in the middle of a streamed export."""
    everything = _as(api, "GET", "/admin/audit/export", actor="cli-test").get_data(as_text=True).splitlines()
    for since in ("0001-01-01", "1969-12-31T23:59:59", "0001-01-01T00:00:00-12:00"):
        listed = _as(api, "GET", f"/admin/audit?since={since}", actor="cli-test")
        assert listed.status_code == 200 and listed.get_json()["events"], since
        exported = _as(api, "GET", f"/admin/audit/export?since={since}", actor="cli-test")
        assert exported.status_code == 200, since
        lines = exported.get_data(as_text=True).splitlines()
        assert lines[:len(everything)] == everything, since  # the views themselves are audited after it


def test_audit_export_is_json_lines_without_images(api: FlaskClient) -> None:
    _as(api, "POST", "/predict", _session(api, "ann"), data={"file": (XRAY.open("rb"), XRAY.name)})
    resp = _as(api, "GET", "/admin/audit/export", actor="cli-test")
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    events = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert {"account_created", "sign_in", "prediction"} <= {e["action"] for e in events}
    assert all(set(e) <= {"id", "time_utc", "actor", "action", "outcome", "address", "target", "image_sha256",
                          "detail"} for e in events)
    assert _as(api, "GET", "/admin/audit?since=yesterday", actor="cli-test").status_code == 400


def test_audit_export_with_redis_down_is_a_503(api: FlaskClient, module_redis: RedisServer) -> None:
    module_redis.stop()
    try:
        resp = _as(api, "GET", "/admin/audit/export", actor="cli-test")
        assert resp.status_code == 503 and resp.get_json()["error"].startswith("data store unavailable")
    finally:
        module_redis.start()
