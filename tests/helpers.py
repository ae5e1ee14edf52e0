"""Shared helpers for the test-suite: free ports, real server processes, waiting."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
XRAYS = FIXTURES / "chest_xray"


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for :func:`http_server` that logs nothing to the test output."""

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on loopback (``port`` 0: any free one) serving ``handler`` from a thread
    while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "service") -> None:
    """Poll ``check`` until it returns True or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process and wait for it; kill it if it does not stop."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fixture_images() -> list[tuple[Path, str]]:
    """The committed real X-rays with their labels."""
    return [(p, label) for label in ("NORMAL", "PNEUMONIA") for p in sorted((XRAYS / label).glob("*.jpeg"))]


def make_dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0,
               intercept: float = 0.0) -> bytes:
    """A minimal valid DICOM file (Secondary Capture) holding one grey frame."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()



def dicom_with(**header: str) -> bytes:
    """A valid DICOM film with these header fields set (an empty value deletes the field)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom(np.full((64, 64), 100, np.uint8))))
    for name, value in header.items():
        if value:
            setattr(ds, name, value)
        elif name in ds:
            delattr(ds, name)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# Accounts that the stack fixture creates through the admin CLI (test-only passwords).
ACCOUNTS = {
    "admin": ("admin", "admin-password-for-tests"),
    "alice": ("clinician", "alice-password-for-tests"),
    "bob": ("clinician", "bob-password-for-tests"),
}


def csrf_token(page: str) -> str:
    """The CSRF token of the first form on a UI page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if match is None:
        raise AssertionError(f"no CSRF token on the page: {page[:300]}")
    return match.group(1)


def sign_in(base_url: str, username: str, password: str | None = None) -> requests.Session:
    """A browser-like session signed in to the UI (asserts that the sign-in worked)."""
    session = requests.Session()
    token = csrf_token(session.get(base_url + "sign-in", timeout=10).text)
    resp = session.post(base_url + "sign-in", timeout=30, data={
        "csrf_token": token, "username": username, "password": password or ACCOUNTS[username][1]})
    assert resp.status_code == 200 and 'id="signed-in-as"' in resp.text, resp.text[:500]
    return session
