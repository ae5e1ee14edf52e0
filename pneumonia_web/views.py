"""The clinician's pages: upload, result (with heat-map), history and what the model is."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from pneumonia_web.api_client import ApiClient
from pneumonia_web.auth import caller

bp = Blueprint("views", __name__)
RESULT_ID = re.compile(r"^[0-9a-f]{32}$")


def _client() -> ApiClient:
    return current_app.extensions["api_client"]


def error_page(status: int, title: str, message: str):
    return render_template("error.html", status=status, title=title, message=message), status


@bp.get("/")
def index():
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return render_template("index.html", max_bytes=limit, max_mb=limit // 2**20)


@bp.post("/predict")
def predict():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return error_page(400, "No file chosen", "Choose a chest X-ray (JPEG, PNG or DICOM) to upload.")
    result = _client().predict(upload.read(), upload.filename, caller())
    return render_template("result.html", result=result, fresh=True)


@bp.get("/results")
def results():
    return render_template("results.html", results=_client().recent(caller()),
                           show_owner=g.user["role"] == "admin")


@bp.get("/results/<result_id>")
def result(result_id: str):
    if not RESULT_ID.match(result_id):
        return error_page(404, "Not found", "No such result.")
    return render_template("result.html", result=_client().result(result_id, caller()), fresh=False)


@bp.post("/results/<result_id>/reading")
def reading(result_id: str):
    if not RESULT_ID.match(result_id):
        return error_page(404, "Not found", "No such result.")
    _client().record_reading(result_id, request.form.get("reading", ""), caller())
    flash("Your reading was recorded.")
    return redirect(url_for("views.result", result_id=result_id))


@bp.get("/model")
def model():
    return render_template("model.html", model=_client().model(caller()))
