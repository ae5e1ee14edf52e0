"""The API with Flask's test client against a real redis-server: predictions, results, bad input, auth."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from model.artifacts import load_metadata
from model.store import ResultStore
from pneumonia_api import create_app
from pneumonia_api.settings import ApiSettings
from tests.conftest import RedisServer
from tests.helpers import dicom_with, fixture_images, make_dicom

TOKEN = "test-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
XRAY = fixture_images()[-1][0]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def api_app(tiny_model_with_statistics: Path, module_redis: RedisServer):
    """One API app (the model loads once) for the module; Redis is emptied before each test."""
    settings = ApiSettings(model_path=str(tiny_model_with_statistics), redis_url=module_redis.url,
                           redis_password=module_redis.password, api_token=TOKEN, max_upload_bytes=2_000_000)
    app = create_app(settings)
    app.config["redis_server"] = module_redis
    return app


@pytest.fixture()
def api(api_app) -> FlaskClient:
    api_app.config["redis_server"].client().flushdb()
    return api_app.test_client()


def _stored(api: FlaskClient) -> list:
    server: RedisServer = api.application.config["redis_server"]
    return ResultStore(server.client()).recent(100)


def test_predict_multipart_then_fetch_result(api: FlaskClient) -> None:
    resp = api.post("/predict", data={"file": (io.BytesIO(XRAY.read_bytes()), "x.jpeg")}, headers=AUTH)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["label"] in ("NORMAL", "PNEUMONIA") and 0 <= body["probability"] <= 1
    assert body["stored"] is True and body["threshold"] > 0 and body["model_version"]
    assert "file_name" not in body and body["inference_ms"] > 0
    assert body["atypicality"] >= 0 and body["atypical"] == (body["atypicality"] >= 1)
    fetched = api.get(f"/results/{body['id']}", headers=AUTH).json
    assert fetched["label"] == body["label"] and fetched["probability"] == pytest.approx(body["probability"])
    assert (fetched["atypicality"], fetched["atypical"]) == (pytest.approx(body["atypicality"]), body["atypical"])
    assert fetched["file_name"] == ""  # the client's file name is never stored
    listed = api.get("/results?limit=5", headers=AUTH).json["results"]
    assert listed[0]["id"] == body["id"]


def test_raw_body_and_heatmap(api: FlaskClient) -> None:
    resp = api.post("/predict?heatmap=1", data=XRAY.read_bytes(), headers={**AUTH, "Content-Type": "image/jpeg"})
    assert resp.status_code == 200
    heat = Image.open(io.BytesIO(base64.b64decode(resp.json["heatmap_png_base64"])))
    assert heat.format == "PNG" and heat.mode == "RGB"


def test_same_image_same_answer_as_batch_predictor(api: FlaskClient, tiny_model: Path) -> None:
    from model.predictor import Predictor

    expected = Predictor(tiny_model).predict_bytes(XRAY.read_bytes())
    got = api.post("/predict", data=XRAY.read_bytes(), headers=AUTH).json["probability"]
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("image", ["palette", "rgba", "sixteen_bit", "dicom_mono1", "dicom_mono2"])
def test_valid_variants_are_classified(api: FlaskClient, image: str) -> None:
    gray = Image.open(XRAY).convert("L")
    data = {
        "palette": lambda: _png(gray.convert("P")),
        "rgba": lambda: _png(gray.convert("RGBA")),
        "sixteen_bit": lambda: _png(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)),
        "dicom_mono1": lambda: make_dicom((255 - np.asarray(gray)).astype(np.uint16) * 16, "MONOCHROME1"),
        "dicom_mono2": lambda: make_dicom(np.asarray(gray).astype(np.uint16) * 16),
    }[image]()
    resp = api.post("/predict", data={"file": (io.BytesIO(data), "img")}, headers=AUTH)
    assert resp.status_code == 200, resp.json


def test_a_dicom_film_outside_the_intended_use_says_so(api: FlaskClient) -> None:
    adult = dicom_with(PatientAge="045Y", ViewPosition="PA")
    body = api.post("/predict", data={"file": (io.BytesIO(adult), "adult.dcm")}, headers=AUTH).json
    assert body["outside_intended_use"].startswith("patient older than 5 years") and body["label"]
    assert api.get(f"/results/{body['id']}", headers=AUTH).json["outside_intended_use"] == body["outside_intended_use"]
    assert api.post("/predict", data=XRAY.read_bytes(), headers=AUTH).json["outside_intended_use"] == ""
    assert "pneumonia_outside_intended_use_total 1.0" in api.get("/metrics").get_data(as_text=True)


def _bad_crc_png() -> bytes:
    data = bytearray(_png(Image.new("L", (64, 64), 128)))
    data[29] ^= 0xFF  # inside the IHDR chunk's CRC
    return bytes(data)


def _bomb() -> bytes:
    return _png(Image.new("1", (12000, 12000)))


BAD_INPUTS = {
    "empty": (b"", 400),
    "text_as_jpg": (b"hello, I am a text file with a .jpg name", 415),
    "html_as_jpg": (b"<html><script>alert(1)</script></html>", 415),
    "truncated_jpeg": (XRAY.read_bytes()[:3000], 422),
    "bad_crc_png": (_bad_crc_png(), 422),
    "decompression_bomb": (_bomb(), 413),
    "one_pixel": (_png(Image.new("L", (1, 1))), 422),
    "gif": (b"GIF89a" + b"\0" * 100, 415),
    "too_large": (b"\xff\xd8\xff" + b"\0" * 2_100_000, 413),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(api: FlaskClient, case: str) -> None:
    data, status = BAD_INPUTS[case]
    resp = api.post("/predict", data={"file": (io.BytesIO(data), "upload.jpg")}, headers=AUTH)
    assert resp.status_code == status, resp.json
    assert resp.json["error"] and "Traceback" not in resp.get_data(as_text=True)
    assert _stored(api) == []


def test_multipart_without_file_field(api: FlaskClient) -> None:
    resp = api.post("/predict", data={"other": "x"}, headers=AUTH, content_type="multipart/form-data")
    assert resp.status_code == 400 and "'file'" in resp.json["error"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", f"Bearer {TOKEN}x"])
def test_token_required(api: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    assert api.post("/predict", data=XRAY.read_bytes(), headers=headers).status_code == 401
    assert api.get("/results", headers=headers).status_code == 401
    assert _stored(api) == []


def test_health_and_metrics_need_no_token(api: FlaskClient) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").json["status"] == "ready"
    api.post("/predict", data=XRAY.read_bytes(), headers=AUTH)
    text = api.get("/metrics").get_data(as_text=True)
    assert "pneumonia_predictions_total" in text and "http_requests_total" in text
    assert "pneumonia_atypical_predictions_total" in text


def test_model_route_describes_the_served_model(api: FlaskClient, tiny_model_with_statistics: Path) -> None:
    assert api.get("/model").status_code == 401
    body = api.get("/model", headers=AUTH).json
    metadata = load_metadata(tiny_model_with_statistics)
    assert (body["model_version"], body["threshold"]) == (metadata["model_version"], metadata["threshold"])
    assert body["validation"] == {key: metadata["validation_metrics"][key] for key in
                                  ("n_images", "accuracy", "sensitivity", "specificity", "roc_auc")}
    assert body["external"] is None  # trained without --external, never recorded
    assert body["atypical_error_rates"]["validation"]["flagged_fraction"] > 0
    assert "command" not in json.dumps(body) and str(tiny_model_with_statistics.parent) not in json.dumps(body)


def test_unknown_result_and_bad_limit(api: FlaskClient) -> None:
    assert api.get("/results/" + "0" * 32, headers=AUTH).status_code == 404
    assert api.get("/results/../../etc/passwd", headers=AUTH).status_code == 404
    assert api.get("/results?limit=abc", headers=AUTH).status_code == 400
    assert api.get("/results?limit=100000", headers=AUTH).status_code == 400


def test_redis_down_still_predicts_and_recovers(api: FlaskClient) -> None:
    server: RedisServer = api.application.config["redis_server"]
    server.stop()
    resp = api.post("/predict", data=XRAY.read_bytes(), headers=AUTH)
    assert resp.status_code == 200 and resp.json["stored"] is False
    assert api.get("/readyz").status_code == 503
    assert api.get("/results", headers=AUTH).status_code == 503
    assert 'pneumonia_redis_errors_total{operation="save"}' in api.get("/metrics").get_data(as_text=True)
    server.start()
    resp = api.post("/predict", data=XRAY.read_bytes(), headers=AUTH)
    assert resp.json["stored"] is True
    assert api.get(f"/results/{resp.json['id']}", headers=AUTH).status_code == 200


def test_api_refuses_to_start_without_token(tiny_model: Path) -> None:
    with pytest.raises(RuntimeError, match="API_TOKEN"):
        create_app(ApiSettings(model_path=str(tiny_model), api_token=""))
