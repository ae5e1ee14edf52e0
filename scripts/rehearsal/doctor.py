"""The doctor's path, run from the internet namespace: sign in through Nginx, upload a real
X-ray, read the result page, then call ``/api/predict`` with an integration token.

``python -m scripts.rehearsal.doctor URL USER PASSWORD TOKEN IMAGE [CA_FILE]`` prints a JSON
summary and exits 1 if any step fails. With an ``https://`` URL every request verifies Nginx's
certificate against CA_FILE, and plain HTTP must redirect to the HTTPS URL.
"""

from __future__ import annotations

import json
import re
import sys

import requests

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _redirects_to_https(url: str) -> bool:
    """Plain HTTP to the same host answers with a permanent redirect to ``url``."""
    answer = requests.get("http://" + url.removeprefix("https://"), timeout=10, allow_redirects=False)
    return answer.status_code == 301 and answer.headers.get("Location") == url


def main(url: str, user: str, password: str, token: str, image: str, ca_file: str = "") -> int:
    session = requests.Session()
    session.headers["Referer"] = url  # as a browser sends it on this site's forms (Referrer-Policy same-origin)
    # per request: a session's own verify loses to REQUESTS_CA_BUNDLE in the environment
    verify = ca_file or True
    data = open(image, "rb").read()
    page = session.get(url + "sign-in", timeout=10, verify=verify)
    signed_in = session.post(url + "sign-in", timeout=30, verify=verify, data={
        "csrf_token": CSRF.search(page.text).group(1), "username": user, "password": password})
    form = session.get(url, timeout=10, verify=verify)
    result = session.post(url + "predict", timeout=60, verify=verify,
                          data={"csrf_token": CSRF.search(form.text).group(1)},
                          files={"file": ("xray.jpeg", data, "image/jpeg")})
    label = re.search(r'id="label">(\w+)<', result.text)
    api = requests.post(url + "api/predict", timeout=60, verify=verify, files={"file": data},
                        headers={"Authorization": f"Bearer {token}"})
    summary = {
        "sign_in": signed_in.status_code == 200 and 'id="signed-in-as"' in signed_in.text,
        "ui_prediction": label.group(1) if result.status_code == 200 and label else f"HTTP {result.status_code}",
        "heatmap": 'id="heatmap"' in result.text,
        "api_prediction": api.json().get("label") if api.status_code == 200 else f"HTTP {api.status_code}",
        "api_stored": api.status_code == 200 and api.json().get("stored") is True,
    }
    if url.startswith("https://"):
        summary["http_redirects_to_https"] = _redirects_to_https(url)
    print(json.dumps(summary))
    ok = summary["sign_in"] and summary["heatmap"] and summary["api_stored"]
    ok = ok and summary.get("http_redirects_to_https", True)
    return 0 if ok and summary["ui_prediction"] in ("NORMAL", "PNEUMONIA") else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
