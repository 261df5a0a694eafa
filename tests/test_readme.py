"""The runnable examples of README.md run as printed (the rules: ``docs_examples``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs_examples import expected_output, matches, page_blocks, run_as_printed

BLOCKS = page_blocks("README.md")


def test_readme_has_the_runnable_examples() -> None:
    assert len(BLOCKS) >= 2
    classic = BLOCKS[0][1]
    for needle in (
        "make_versioned(user_cls=None)",
        '__versioned__ = {}',
        "sa.orm.configure_mappers()",
        'sa.create_engine("sqlite://")',
        "article.versions[0].name",
        "article.versions[0].revert()",
    ):
        assert needle in classic
    for _, code in BLOCKS:
        assert expected_output(code), "a runnable example should show what it prints"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS],
                         ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs_as_printed(code: str, tmp_path: Path) -> None:
    run_as_printed(code, tmp_path)


@pytest.mark.parametrize(("line", "expected", "ok"), [
    ("Some article", "Some article", True),
    ("Some article!", "Some article", False),
    ("Unknown option 'x' in Draft. Known: a, b", "Unknown option 'x' in Draft. ...", True),
    ("Unknown option 'y' in Draft.", "Unknown option 'x' in Draft. ...", False),
])
def test_expectation_matching(line: str, expected: str, ok: bool) -> None:
    assert matches(line, expected) is ok


def test_expected_output_reads_comments_only() -> None:
    code = 'print("# -> not this")  # -> # -> not this\n# -> second\nx = 1  # a comment\n'
    assert expected_output(code) == ["# -> not this", "second"]
