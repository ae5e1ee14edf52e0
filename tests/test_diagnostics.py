"""The failure report plugin (``tests.diagnostics``): a failed browser or stack test shows what they saw."""

from __future__ import annotations

import pytest

INNER = '''
import pytest


class Driver:
    current_url = "http://127.0.0.1:8080/"
    title = "Upload"

    def execute_script(self, script):
        return "Upload a chest X-ray"

    def get_log(self, kind):
        raise RuntimeError("chromedriver went away")


class Stack:
    def __init__(self, log_dir):
        self.log_dir = log_dir


@pytest.fixture
def browser():
    return Driver()


@pytest.fixture
def stack(tmp_path):
    (tmp_path / "api.log").write_text("\\n".join(f"api line {i}" for i in range(40)))
    return Stack(tmp_path)


def test_fails(browser, stack):
    assert False


def test_passes(browser, stack):
    pass
'''


def test_a_failed_test_reports_the_page_and_the_logs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "tests.diagnostics")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*browser state*", "address: http://127.0.0.1:8080/", "title: Upload",
                                 "text: Upload a chest X-ray",
                                 "console: unavailable (RuntimeError: chromedriver went away)",
                                 "*end of api.log*", "api line 25", "api line 39"])
    output = result.stdout.str()
    assert output.count("browser state") == 1  # the passing test adds nothing
    assert "api line 24" not in output  # the end of the log only
