"""The doctor's path, run from the internet namespace: sign in through Nginx, upload a real
X-ray, read the result page, then call ``/api/predict`` with an integration token.

``python -m scripts.rehearsal.doctor URL USER PASSWORD TOKEN IMAGE`` prints a JSON summary and
exits 1 if any step fails.
"""

from __future__ import annotations

import json
import re
import sys

import requests

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def main(url: str, user: str, password: str, token: str, image: str) -> int:
    session = requests.Session()
    data = open(image, "rb").read()
    page = session.get(url + "sign-in", timeout=10)
    signed_in = session.post(url + "sign-in", timeout=30, data={
        "csrf_token": CSRF.search(page.text).group(1), "username": user, "password": password})
    form = session.get(url, timeout=10)
    result = session.post(url + "predict", timeout=60, data={"csrf_token": CSRF.search(form.text).group(1)},
                          files={"file": ("xray.jpeg", data, "image/jpeg")})
    label = re.search(r'id="label">(\w+)<', result.text)
    api = requests.post(url + "api/predict", timeout=60, files={"file": data},
                        headers={"Authorization": f"Bearer {token}"})
    summary = {
        "sign_in": signed_in.status_code == 200 and 'id="signed-in-as"' in signed_in.text,
        "ui_prediction": label.group(1) if result.status_code == 200 and label else f"HTTP {result.status_code}",
        "heatmap": 'id="heatmap"' in result.text,
        "api_prediction": api.json().get("label") if api.status_code == 200 else f"HTTP {api.status_code}",
        "api_stored": api.status_code == 200 and api.json().get("stored") is True,
    }
    print(json.dumps(summary))
    ok = summary["sign_in"] and summary["heatmap"] and summary["api_stored"]
    return 0 if ok and summary["ui_prediction"] in ("NORMAL", "PNEUMONIA") else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
