"""conformance/run.py: its verdict on a run, and the committed expected-failures list."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "conformance" / "run.py"


@pytest.fixture(scope="module")
def runner() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("conformance_run", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_the_committed_list_parses_and_every_entry_has_a_reason(runner):
    expected = runner.load_expected()
    for test_id, (dbs, reason) in expected.items():
        assert test_id.startswith("tests/"), test_id
        assert dbs and dbs <= set(runner.DATABASES)
        assert len(reason) > 20, test_id


def test_verdict_flags_unlisted_failures_and_listed_passes(runner):
    expected = {
        "tests/a.py::test_listed": (frozenset({"sqlite"}), "a reason"),
        "tests/a.py::test_fixed": (frozenset({"sqlite", "mysql"}), "a reason"),
        "tests/a.py::test_listed_elsewhere": (frozenset({"mysql"}), "a reason"),
    }
    result = runner.Result(
        "sqlite",
        {
            "tests/a.py::test_listed": "failed",
            "tests/a.py::test_fixed": "passed",
            "tests/a.py::test_listed_elsewhere": "error",
            "tests/a.py::test_new": "failed",
            "tests/a.py::test_skipped": "skipped",
        },
        1.0,
        1,
    )
    problems = runner.compare(result, expected)
    assert problems == [
        "ERROR (not in the expected failures): tests/a.py::test_listed_elsewhere",
        "FAILED (not in the expected failures): tests/a.py::test_new",
        "LISTED BUT PASSED (remove it from the list): tests/a.py::test_fixed",
    ]
    assert runner.summary(result).startswith(
        "DB=sqlite: 1 passed, 2 failed, 1 errors, 1 skipped (25.0% of 4 run pass)"
    )


def test_a_run_with_only_listed_failures_passes(runner):
    expected = {"tests/a.py::test_listed": (frozenset({"postgres"}), "a reason")}
    result = runner.Result("postgres", {"tests/a.py::test_listed": "error"}, 1.0, 1)
    assert runner.compare(result, expected) == []
