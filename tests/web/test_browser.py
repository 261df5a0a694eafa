"""End to end in a real headless Chromium: ``chronicle serve`` and the pages it serves.

The installed ``chronicle`` command serves a history written by the ORM (SQLite and
PostgreSQL); Chromium, driven by Playwright, with JavaScript disabled, goes from the
timeline to a transaction, to an entity, to a diff of two of its versions, through
the links and forms a user would use, checking the text on each page and saving a
screenshot of each (the paths are printed; ``CHRONICLE_ARTIFACTS`` moves them).

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` package (its
own browsers are never downloaded or used). Without them the tests skip, unless
``CHRONICLE_REQUIRE_BROWSER=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .history import BOB, SCRIPT, History, write_history

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.once,
    pytest.mark.dbs("sqlite", "postgresql"),
    pytest.mark.versioning(user_cls="User"),
]


def _require_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright is not installed (pip install playwright)"
    if reason is None and not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if reason is None:
        return
    if os.environ.get("CHRONICLE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and CHRONICLE_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(reason)


def _chronicle() -> str:
    script = Path(sys.executable).with_name("chronicle")
    assert script.exists(), f"the chronicle command is not installed next to {sys.executable}"
    return str(script)


@pytest.fixture
def history(base: Any, db: Any) -> History:
    return write_history(base, db)


@pytest.fixture
def server(db: Any, history: History) -> Iterator[str]:
    """``chronicle serve`` on a free port, as a subprocess; yields its base URL."""
    url = db.engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [_chronicle(), "serve", url, "--port", "0", "--title", "Chronicle"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            first = ""
        if "http://" not in first:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"chronicle serve did not start: {first!r}\n{err}")
        assert first.startswith("Serving the history of ")
        assert "(2 versioned tables)" in first and "http://127.0.0.1:" in first
        yield first.split(" at ", 1)[1].split()[0].rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def artifacts(db: Any) -> Path:
    base = Path(os.environ.get("CHRONICLE_ARTIFACTS", ROOT / "tests" / "artifacts"))
    where = base / "web" / db.name
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_timeline_to_transaction_to_entity_to_diff(server, history, artifacts, db, capsys):
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    t1, t2, t3, t4 = history.txs
    shots: list[Path] = []
    dialogs: list[str] = []

    def shot(page: Any, name: str) -> None:
        path = artifacts / f"{len(shots) + 1}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            # No JavaScript: every page and form must work without it.
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": 1200, "height": 800},
            )
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            # The timeline: newest first, the user and the tables of each transaction.
            page.goto(server + "/")
            expect(page).to_have_title("Timeline · Chronicle")
            rows = page.locator("table.timeline tbody tr")
            expect(rows).to_have_count(4)
            expect(rows.nth(0)).to_contain_text(f"#{t4}")
            expect(rows.nth(0)).to_contain_text("alice")
            expect(rows.nth(2)).to_contain_text(BOB)  # a hostile name, shown as text
            expect(rows.nth(3)).to_contain_text("article tag")
            expect(page.locator("th").first).to_have_text("Tx")
            shot(page, "timeline")

            # Filters are a plain GET form: the URL they lead to can be shared.
            page.select_option("select[name=table]", "article")
            page.fill("input[name=user]", "alice")
            page.click("button:has-text('Filter')")
            assert "table=article" in page.url and "user=alice" in page.url
            expect(rows).to_have_count(2)
            shot(page, "timeline-filtered")
            page.click("a:has-text('Clear')")
            expect(rows).to_have_count(4)

            # A transaction: every change, field by field.
            page.click(f"a:has-text('#{t2}')")
            assert page.url == f"{server}/tx/{t2}"
            expect(page.locator("h1")).to_have_text(f"Transaction #{t2}")
            expect(page.locator("dl.facts")).to_contain_text(BOB)
            expect(page.locator("dl.facts")).to_contain_text("198.51.100.7")
            changed = page.locator("table.fields tr.changed th")
            expect(changed).to_have_text(["title", "body"])
            # What is shown (innerText, after the stylesheet's capitals).
            assert page.locator("section.change h2 .op").inner_text() == "UPDATE"
            shot(page, "transaction")

            # The entity: its whole history, newest first, and the last change.
            page.click("section.change h2 a")
            expect(page.locator("h1")).to_have_text("article 1")
            expect(page.locator("table.history tbody tr")).to_have_count(3)
            expect(page.locator("table.sidebyside tr.changed th.field")).to_have_text(
                ["title changed", "body changed"]
            )
            shot(page, "entity")

            # Compare the first and the last version.
            page.select_option("select[name=from]", str(t1))
            page.select_option("select[name=to]", str(t4))
            page.click("button:has-text('Compare')")
            assert f"from={t1}" in page.url and f"to={t4}" in page.url
            expect(page.locator("table.sidebyside tr.changed th.field")).to_have_text(
                ["title changed", "body changed", "status changed"]
            )
            status = page.locator("table.sidebyside tr.changed", has_text="status")
            expect(status.locator("td.old")).to_have_text("draft")
            expect(status.locator("td.new")).to_have_text("published")
            lines = page.locator("table.lines tr")
            expect(lines.nth(1).locator("td.old")).to_have_text(
                "Every change is copied into a version table."
            )
            expect(lines.nth(1).locator("td.new mark")).to_have_text(["its own"])
            expect(page.locator("table.lines tr.line-insert td.new")).to_have_text(
                "A diff shows <what> changed & where."
            )
            # Highlighted in colour: a changed row does not look like an unchanged one.
            same = page.locator("table.sidebyside tr.same td.new").first
            new = page.locator("table.sidebyside tr.changed td.new").first
            assert new.evaluate("e => getComputedStyle(e).backgroundColor") != \
                same.evaluate("e => getComputedStyle(e).backgroundColor")
            shot(page, "diff")

            # The deleted article with a script tag as its title: shown, never run.
            page.goto(f"{server}/entity/article?key=2&from={t1}&to={t3}")
            expect(page.locator("table.sidebyside tr", has_text="title").locator("td.old")) \
                .to_have_text(SCRIPT)
            expect(page.locator("table.sidebyside thead")).to_contain_text("deleted")
            shot(page, "deleted-entity")
            context.close()
        finally:
            browser.close()

    assert dialogs == []
    with capsys.disabled():
        print(f"\nscreenshots ({db.name}):", *[str(p) for p in shots], sep="\n  ")
    for path in shots:
        assert path.stat().st_size > 5000, path
