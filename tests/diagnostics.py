"""A pytest plugin: when a test that uses a browser or the stack fails, its report also shows what
they saw (the page, the browser console, the end of the API's, the UI's and Nginx's logs)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

LOG_LINES = 15
LOGS = ("api", "ui", "nginx-access", "nginx-error")  # the stack processes a request passes


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Add the ``browser`` fixture's page and the ``stack`` fixture's logs to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    arguments = getattr(item, "funcargs", {})
    if "browser" in arguments:
        report.sections.append(("browser state", browser_state(arguments["browser"])))
    if "stack" in arguments:
        for log in (arguments["stack"].log_dir / f"{name}.log" for name in LOGS):
            tail = log.read_text(errors="replace").splitlines()[-LOG_LINES:] if log.is_file() else ["(no log)"]
            report.sections.append((f"end of {log.name}", "\n".join(tail)))


def browser_state(driver: Any) -> str:
    """The current page's address, title, visible text and console messages (never raises: the
    browser may be what failed)."""
    parts = []
    for label, read in (("address", lambda: driver.current_url), ("title", lambda: driver.title),
                        ("text", lambda: driver.execute_script("return document.body ? document.body.innerText : ''")),
                        ("console", lambda: "\n".join(str(entry) for entry in driver.get_log("browser")))):
        try:
            parts.append(f"{label}: {read()}")
        except Exception as error:  # noqa: BLE001 - a diagnosis must not hide the test's own failure
            parts.append(f"{label}: unavailable ({type(error).__name__}: {error})")
    return "\n".join(parts)
