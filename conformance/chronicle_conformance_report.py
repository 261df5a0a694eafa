"""pytest plugin of the conformance runner: write each test's outcome to a JSON file.

Loaded with ``-p chronicle_conformance_report``; the file is named by the environment
variable ``CHRONICLE_CONFORMANCE_REPORT``. A test's outcome is ``passed``, ``failed``,
``skipped``, ``xfailed``, ``xpassed`` or ``error`` (its set-up or teardown failed, which
wins over the outcome of the test itself). A module that cannot be collected is one
``error`` under its own id.
"""

from __future__ import annotations

import json
import os
from typing import Any

_outcomes: dict[str, str] = {}


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _outcomes[report.nodeid] = "error"


def pytest_runtest_logreport(report: Any) -> None:
    current = _outcomes.get(report.nodeid)
    if current == "error":
        return
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            _outcomes[report.nodeid] = "xpassed" if xfail else "passed"
        elif report.failed:
            _outcomes[report.nodeid] = "failed"
        else:
            _outcomes[report.nodeid] = "xfailed" if xfail else "skipped"
    elif report.failed:
        _outcomes[report.nodeid] = "error"
    elif report.skipped:
        _outcomes[report.nodeid] = "xfailed" if xfail else "skipped"


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("CHRONICLE_CONFORMANCE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_outcomes, f, indent=1, sort_keys=True)
