"""The JSON object a request carries, for the routes that take one."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest


def json_object() -> dict[str, Any]:
    """The request's JSON object; ``{}`` without a JSON body (each route then names the field it lacks).
    Valid JSON that is not an object (a list, a string, a number) is a 400, never a failure later on."""
    body = request.get_json(silent=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not a JSON {type(body).__name__}")
    return body
