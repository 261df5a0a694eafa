"""Every runnable example of docs/*.md runs as printed (see ``docs_examples``).

Pages listed in ``IN_STEPS`` are one script told in steps: each block continues the
blocks before it, so each is run together with those.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docs_examples import ROOT, page_blocks, run_as_printed

IN_STEPS = {
    "async.md", "bulk.md", "context.md", "native.md", "transactions.md", "verify.md", "web.md"
}
#: Pages whose examples need PostgreSQL (at ``CHRONICLE_PG_URL``).
NEEDS_POSTGRESQL = {"append-only.md", "native.md"}
PAGES = sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def _cases() -> list[tuple[str, str]]:
    cases = []
    for page in PAGES:
        blocks = page_blocks(page)
        for i, (line, _) in enumerate(blocks):
            code = "\n".join(c for _, c in blocks[:i + 1]) if page in IN_STEPS else blocks[i][1]
            cases.append((f"{page}:{line}", code))
    return cases


CASES = _cases()


def test_every_page_has_runnable_examples() -> None:
    assert PAGES
    for page in PAGES:
        assert page_blocks(page), f"docs/{page} has no runnable example"


@pytest.mark.parametrize("code", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_doc_example_runs_as_printed(
    code: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page = request.node.callspec.id.split(":")[0]
    if page in NEEDS_POSTGRESQL and "postgresql" not in request.config._chronicle_dbs:  # type: ignore[attr-defined]
        pytest.skip(f"docs/{page} needs PostgreSQL, which is not selected or not reachable")
    run_as_printed(code, tmp_path)
