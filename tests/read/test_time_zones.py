"""Time zones: ``issued_at`` is naive UTC, and datetimes given to the API are compared
as UTC (aware ones converted, naive ones taken as UTC), whatever the time zone of the
process (``TZ``) or of the database session.

The last test runs the history-reading tests again in a subprocess whose ``TZ`` (and,
for PostgreSQL, ``PGTZ``, the session time zone libpq asks for) is ten hours behind
UTC.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sqlalchemy_chronicle import version_class

#: POSIX TZ strings (no zoneinfo needed): the sign is the other way round.
UTC_PLUS_14 = "KIR-14"
UTC_MINUS_10 = "HST10"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The process's local time zone is UTC+14 for the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = UTC_PLUS_14
    time.tzset()
    try:
        local = datetime.datetime.now()
        utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert local - utc > datetime.timedelta(hours=13)  # the zone really is in effect
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_issued_at_is_naive_utc(db, article_models, far_from_utc):
    Article = article_models()
    session = db.session()
    before = _utc_now()
    session.add(Article(name="a"))
    session.commit()
    after = _utc_now()
    (issued_at,) = [r["issued_at"] for r in db.rows("transaction")]
    assert issued_at.tzinfo is None
    # MariaDB keeps whole seconds: allow for the truncation.
    assert before - datetime.timedelta(seconds=1) <= issued_at <= after


def _far_session_time_zone(session: Any) -> None:
    """On PostgreSQL, make this transaction's session time zone UTC+14 too (an aware
    parameter compared with a ``timestamp`` column is converted through it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT set_config('TimeZone', 'Etc/GMT-14', true)"))


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_as_of_compares_aware_datetimes_in_utc(db, article_models, manager, far_from_utc):
    Article = article_models()
    ArticleVersion = version_class(Article)
    session = db.session()
    article = Article(name="at eleven")
    session.add(article)
    session.commit()
    article.name = "at noon"
    session.commit()
    eleven = datetime.datetime(2026, 1, 1, 11, 0)
    first, second = [r["id"] for r in db.rows("transaction")]
    transaction = manager.transaction_cls.__table__
    with db.engine.begin() as connection:
        for tx, issued_at in ((first, eleven), (second, eleven.replace(hour=12))):
            connection.execute(
                sa.update(transaction).where(transaction.c.id == tx).values(issued_at=issued_at)
            )
    session.rollback()  # end the session's snapshot (REPEATABLE READ on MariaDB)

    def name_at(at: datetime.datetime) -> list[str]:
        _far_session_time_zone(session)
        names = [v.name for v in session.scalars(ArticleVersion.as_of(at))]
        session.rollback()
        return names

    def zone(hours: int) -> datetime.timezone:
        return datetime.timezone(datetime.timedelta(hours=hours))

    # 11:00 UTC, written in other zones, is the first transaction.
    assert name_at(datetime.datetime(2026, 1, 1, 13, 0, tzinfo=zone(2))) == ["at eleven"]
    assert name_at(datetime.datetime(2026, 1, 1, 6, 30, tzinfo=zone(-5))) == ["at eleven"]
    assert name_at(datetime.datetime(2026, 1, 2, 1, 59, tzinfo=zone(14))) == ["at eleven"]
    # 12:00 UTC and later: the second.
    assert name_at(datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)) == [
        "at noon"
    ]
    assert name_at(datetime.datetime(2026, 1, 1, 2, 0, tzinfo=zone(-10))) == ["at noon"]
    # Before 11:00 UTC: nothing yet, although it is 11:00 or later in that zone.
    assert name_at(datetime.datetime(2026, 1, 1, 12, 59, tzinfo=zone(2))) == []
    # A naive datetime is UTC, not the local time of the process (UTC+14 here).
    assert name_at(datetime.datetime(2026, 1, 1, 11, 30)) == ["at eleven"]
    assert name_at(datetime.datetime(2026, 1, 1, 10, 59)) == []


@pytest.mark.once
def test_the_history_tests_pass_far_from_utc(db_name):
    """The as_of, transaction and time-zone tests, in a process whose local time zone
    (and PostgreSQL session time zone) is ten hours behind UTC, on this test's
    database (the tests above put the process fourteen hours ahead)."""
    env = {
        **os.environ,
        "TZ": UTC_MINUS_10,
        "PGTZ": "Etc/GMT+10",
        "CHRONICLE_TEST_DBS": db_name,
    }
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/read/test_as_of.py", "tests/read/test_transactions.py",
            "tests/read/test_time_zones.py", "-k", "not history_tests_pass",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
