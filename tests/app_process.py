"""Running the test applications in a subprocess, and wiping the database they wrote.

``continuum_app.py`` runs the real SQLAlchemy-Continuum, whose ``make_versioned``
installs global listeners: it never enters the test process. ``history_app.py``
(tests/integrations) writes histories with chronicle the same way. Both take
``command URL`` and exit 0 when all went well.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

__all__ = ["CONTINUUM_APP", "run_app", "run_continuum_app", "wipe"]

CONTINUUM_APP = Path(__file__).resolve().with_name("continuum_app.py")


def run_app(script: Path, command: str, url: str, env: dict[str, str] | None = None) -> str:
    """Run ``python -W error script command url`` (the environment of this process plus
    ``env``); assert it succeeded and return what it printed."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script), command, url],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_continuum_app(command: str, url: str) -> str:
    """Run ``continuum_app.py command url`` with the real SQLAlchemy-Continuum."""
    return run_app(CONTINUUM_APP, command, url)


def wipe(database: str | sa.Engine) -> None:
    """Drop every table and sequence of the database (a URL, or an Engine's) and, on
    PostgreSQL, the trigger functions native versioning leaves."""
    if isinstance(database, sa.Engine):
        database = database.url.render_as_string(hide_password=False)
    engine = sa.create_engine(database, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "mysql":
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            metadata = sa.MetaData()
            metadata.reflect(conn)
            metadata.drop_all(conn)
            if conn.dialect.supports_sequences:
                for name in sa.inspect(conn).get_sequence_names():
                    conn.execute(sa.schema.DropSequence(sa.Sequence(name)))
            if conn.dialect.name == "mysql":
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
            if conn.dialect.name == "postgresql":
                for (name,) in conn.execute(sa.text(
                    "SELECT proname FROM pg_proc WHERE proname LIKE :names "
                    "AND pronamespace = 'public'::regnamespace"
                ), {"names": "chronicle%"}):
                    conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()
