"""A real browser: headless Chromium drives the UI through Nginx: sign in, upload -> result page with
heat-map, history, sign out; an atypical film's warning."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import requests

from model.artifacts import load_metadata
from pneumonia_web.admin import AUDIT_PAGE
from scripts.stack import Stack
from tests.conftest import STACK_ENV
from tests.helpers import ACCOUNTS, REPO, dicom_with, fixture_images, free_port, stop, wait_for

SCREENSHOTS = REPO / "documentation" / "screenshots"


@pytest.fixture()
def browser() -> Iterator["object"]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--window-size=1100,1000",
                 "--ignore-certificate-errors"):  # the HTTPS test's certificate is self-signed
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages for a failure report
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_upload_to_result_page_with_heatmap(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    xray, _ = fixture_images()[-1]
    browser.get(stack.config.url)
    assert "/sign-in" in browser.current_url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(ACCOUNTS["alice"][1])
    browser.save_screenshot(str(SCREENSHOTS / "ui_signin.png"))
    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "signed-in-as")))
    assert "Upload a chest X-ray" in browser.page_source
    browser.save_screenshot(str(SCREENSHOTS / "ui_upload.png"))
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")
    with tempfile.TemporaryDirectory() as folder:  # a file over the limit is refused before it is sent (upload.js)
        big = Path(folder) / "big.dcm"
        big.write_bytes(b"\0" * (stack.config.max_upload_mb * 2**20 + 1))
        browser.find_element(By.ID, "file").send_keys(str(big))
        browser.find_element(By.ID, "submit").click()
        error = browser.find_element(By.ID, "upload-error")
        assert error.is_displayed() and f"the upload limit is {stack.config.max_upload_mb} MB" in error.text
        assert browser.find_elements(By.ID, "upload-form") and not browser.find_elements(By.ID, "verdict")
    browser.find_element(By.ID, "file").send_keys(str(xray))
    assert browser.find_element(By.ID, "drop-text").text == xray.name
    assert not browser.find_element(By.ID, "upload-error").is_displayed()
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "verdict")))
    label = browser.find_element(By.ID, "label").text
    assert label in ("NORMAL", "PNEUMONIA")
    heatmap = browser.find_element(By.ID, "heatmap")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap) > 0
    assert "not a diagnosis" in browser.page_source
    assert "not where a lesion is" in browser.find_element(By.ID, "heatmap-caption").text
    browser.set_window_size(1100, 1000)
    film = browser.find_element(By.ID, "original")
    side_by_side = film.location["y"] == heatmap.location["y"] and heatmap.location["x"] >= film.location["x"] + 380
    assert side_by_side, f"film at {film.location}, heat-map at {heatmap.location}: not side by side"
    browser.save_screenshot(str(SCREENSHOTS / "ui_result.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})  # printed or saved as PDF
    shown = {name: browser.find_element(By.CSS_SELECTOR, css).is_displayed() for name, css in (
        ("navigation", "header nav"), ("upload link", "p.no-print"), ("verdict", "#verdict"),
        ("heat-map", "#heatmap"), ("result id", "#result-id"), ("disclaimer", "footer"))}
    assert shown == {"navigation": False, "upload link": False, "verdict": True, "heat-map": True,
                     "result id": True, "disclaimer": True}, shown
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    result_id = browser.find_element(By.ID, "result-id").text
    browser.find_element(By.ID, "reading-normal").click()  # the clinician's own reading, kept with the result
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "reading")))
    assert browser.current_url.endswith(f"/results/{result_id}") and "Your reading was recorded." in browser.page_source
    reading = browser.find_element(By.ID, "reading").text
    verdict = "agrees with" if label == "NORMAL" else "differs from"
    assert reading.startswith(f"NORMAL ({verdict} the model), by user:alice"), reading
    browser.find_element(By.LINK_TEXT, "About the model").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "model-metrics")))
    metadata = load_metadata(stack.config.model_path)
    assert browser.find_element(By.ID, "model-version").text == metadata["model_version"]
    assert browser.find_element(By.ID, "model-threshold").text.startswith(f"{metadata['threshold'] * 100:.1f} %")
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#model-metrics tbody tr")]
    expected = [f"{m['n_images']} {m['accuracy'] * 100:.1f} % {m['sensitivity'] * 100:.1f} % "
                f"{m['specificity'] * 100:.1f} % {m['roc_auc']:.3f}"
                for m in (metadata["validation_metrics"], metadata["external_metrics"])]
    assert [row.split(" ", 1)[0] for row in rows] == ["Validation:", "External:"], rows
    assert all(row.endswith(numbers) for row, numbers in zip(rows, expected)), (rows, expected)
    assert "atypical" in browser.find_element(By.ID, "model-atypical").text
    browser.save_screenshot(str(SCREENSHOTS / "ui_model.png"))
    browser.find_element(By.LINK_TEXT, "My results").click()
    WebDriverWait(browser, 30).until(
        lambda b: b.current_url.endswith("/results") and b.execute_script("return document.readyState") == "complete")
    assert result_id in browser.page_source, browser.find_element(By.TAG_NAME, "body").text
    row = browser.find_element(By.XPATH, f"//table[@id='results']//tr[td/a[contains(@href, '{result_id}')]]")
    assert row.find_elements(By.TAG_NAME, "td")[3].text == "NORMAL", row.text  # the reading column
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors  # no script error, no failed resource (a missing favicon was one) on any page so far
    browser.find_element(By.ID, "sign-out").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "signin-form")))
    browser.get(stack.config.url + "results")
    assert "/sign-in" in browser.current_url and result_id not in browser.page_source


def _upload_as_alice(browser, url: str, image: Path) -> None:
    """Sign in as the clinician and upload ``image``; returns on the result page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    assert browser.current_url.startswith(url + "sign-in")
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(ACCOUNTS["alice"][1])
    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "signed-in-as")))
    browser.find_element(By.ID, "file").send_keys(str(image))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "verdict")))


def test_atypical_film_gets_a_warning(stack: Stack, browser, tmp_path: Path) -> None:
    """A blank grey square is no chest film: the shipped model calls it PNEUMONIA, and the page says
    that the film is unlike the training films."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    blank = tmp_path / "blank.png"
    Image.new("L", (512, 512), 128).save(blank)
    _upload_as_alice(browser, stack.config.url, blank)
    assert "Atypical film." in browser.find_element(By.ID, "atypical").text
    browser.save_screenshot(str(SCREENSHOTS / "ui_atypical.png"))
    browser.find_element(By.LINK_TEXT, "My results").click()
    assert "atypical" in browser.find_element(By.ID, "results").text


def test_film_outside_the_intended_use_gets_a_warning(stack: Stack, browser, tmp_path: Path) -> None:
    """A DICOM film of an adult: the result page and the history say it lies outside the intended use."""
    from selenium.webdriver.common.by import By

    adult = tmp_path / "adult.dcm"
    adult.write_bytes(dicom_with(PatientAge="045Y", ViewPosition="AP", BodyPartExamined="CHEST"))
    _upload_as_alice(browser, stack.config.url, adult)
    warning = browser.find_element(By.ID, "outside-intended-use").text
    assert warning.startswith("Outside the intended use: patient older than 5 years") and "45" not in warning
    browser.find_element(By.LINK_TEXT, "My results").click()
    assert "outside intended use" in browser.find_element(By.ID, "results").text


def test_admin_reads_the_audit_trail(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(stack.config.url + "admin/audit")
    browser.find_element(By.ID, "username").send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(ACCOUNTS["admin"][1])
    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "audit")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert rows and any("sign_in" in row.text for row in rows)
    assert bool(browser.find_elements(By.ID, "older-events")) == (len(rows) == AUDIT_PAGE), "link from full pages only"
    broken = browser.execute_script(  # short cells (time, actor, action, outcome, address) on one line each
        "const r = document.createRange();"
        "return [...document.querySelectorAll('#audit tbody td:nth-child(-n+5)')].filter(td => {"
        "  r.selectNodeContents(td); return r.getClientRects().length > 1; }).map(td => td.textContent);")
    assert not broken, f"audit cells wrapped: {broken[:5]}"
    browser.save_screenshot(str(SCREENSHOTS / "ui_audit.png"))
    assert not unlabelled_fields(browser)
    browser.get(stack.config.url + "admin/users")
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "users")))
    assert not unlabelled_fields(browser)

    with requests.Session() as api:  # more than a page of new events: every listing of results is audited
        api.headers["Authorization"] = f"Bearer {stack.secrets()['API_TOKEN']}"
        for _ in range(int(STACK_ENV["AUDIT_SCAN_MAX"])):
            api.get(f"http://127.0.0.1:{stack.config.api_port}/results", params={"limit": 1}).raise_for_status()
    browser.get(stack.config.url + "admin/audit")
    page = [row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    browser.find_element(By.ID, "older-events").click()
    WebDriverWait(browser, 30).until(lambda b: "before=" in b.current_url)
    older = [row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert len(page) == AUDIT_PAGE and older, (len(page), len(older))
    ids = [tuple(map(int, i.split("-"))) for i in page + older]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), "the next page holds only older events"

    # the accounts were created before those listings: beyond what one query reads (AUDIT_SCAN_MAX)
    browser.get(stack.config.url + "admin/audit?action=account_created")
    assert browser.find_element(By.ID, "scan-stopped").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    for _ in range(20):
        browser.find_element(By.ID, "older-events").click()
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")
        rows = browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
        if rows:
            break
    assert {"account_created"} == {row.find_elements(By.TAG_NAME, "td")[2].text for row in rows}, "search went on"


def test_admin_sees_the_agreement_with_the_readings(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    (normal, _), (pneumonia, _) = fixture_images()[0], fixture_images()[-1]
    with requests.Session() as api:  # two read results through the API, as a clinician's would be
        api.headers.update({"Authorization": f"Bearer {stack.secrets()['API_TOKEN']}", "X-Actor": "test"})
        base = f"http://127.0.0.1:{stack.config.api_port}"
        for film, reading in ((normal, "NORMAL"), (pneumonia, "PNEUMONIA")):
            made = api.post(base + "/predict", files={"file": (film.name, film.read_bytes())}).json()
            api.post(base + f"/results/{made['id']}/reading", json={"reading": reading}).raise_for_status()
        expected = api.get(base + "/admin/agreement").json()["models"][0]

    browser.get(stack.config.url)
    browser.find_element(By.ID, "username").send_keys("admin")
    browser.find_element(By.ID, "password").send_keys(ACCOUNTS["admin"][1])
    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "signed-in-as")))
    browser.find_element(By.LINK_TEXT, "Agreement").click()
    section = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.agreement")))
    served = load_metadata(stack.config.model_path)["model_version"]
    assert section.get_attribute("data-version") == served and expected["served"]
    assert section.find_element(By.TAG_NAME, "h2").text == f"{served} (served now)"
    cm = expected["confusion_matrix"]
    assert expected["read_positive"] >= 1 and expected["read_negative"] >= 1
    assert section.find_element(By.CLASS_NAME, "read").text == (
        f"{expected['read']}: {expected['read_positive']} read PNEUMONIA, {expected['read_negative']} read NORMAL")
    assert section.find_element(By.CLASS_NAME, "called-positive").text == f"{cm['tp']} / {cm['fp']}"
    assert section.find_element(By.CLASS_NAME, "called-negative").text == f"{cm['fn']} / {cm['tn']}"
    share = expected["negative_agreement"]
    assert section.find_element(By.CLASS_NAME, "negative-agreement").text.startswith(
        f"{share['value'] * 100:.1f} % ({share['interval_95'][0] * 100:.1f} % to")
    browser.save_screenshot(str(SCREENSHOTS / "ui_agreement.png"))


def unlabelled_fields(browser) -> list[str]:
    """Names of the page's visible form fields that a screen reader could not name (no label, no aria-label)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)")


@pytest.fixture()
def tls_proxy(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A real Nginx ending TLS in front of the UI, as the public host does on AWS (X-Forwarded-Proto
    https): the UI then applies its HTTPS-only checks. Yields the https:// URL."""
    cert, key, port = tmp_path / "tls.crt", tmp_path / "tls.key", free_port()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    (tmp_path / "logs").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "pneumonia.conf").write_text(f"""server {{
  listen 127.0.0.1:{port} ssl;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  location / {{
    proxy_pass http://127.0.0.1:{stack.config.ui_port};
    proxy_set_header Host $http_host;  # with the port, as the Referer has it
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto https;
  }}
}}
""")
    conf = tmp_path / "nginx.conf"
    conf.write_text(stack.nginx_main_config(tmp_path))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, what="TLS proxy")
    yield f"https://127.0.0.1:{port}/"
    stop(proc)


def test_sign_in_and_upload_over_https(tls_proxy: str, browser) -> None:
    """Over HTTPS Flask-WTF also requires a same-site Referer on every form post; the UI's
    Referrer-Policy (same-origin) lets the browser send it, so a doctor can sign in and upload."""
    from selenium.webdriver.common.by import By

    _upload_as_alice(browser, tls_proxy, fixture_images()[0][0])
    assert {c["name"]: c["secure"] for c in browser.get_cookies()}["pneumonia_session"] is True
    assert browser.find_element(By.ID, "label").text in ("NORMAL", "PNEUMONIA")
