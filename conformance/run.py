"""Run SQLAlchemy-Continuum 2.0.0's own test suite against sqlalchemy-chronicle.

    python conformance/run.py                 # sqlite, postgres and mysql
    python conformance/run.py --db postgres-native   # native versioning (PostgreSQL triggers)
    python conformance/run.py --db sqlite     # one database (or several, comma-separated)
    python conformance/run.py -- -k revert    # arguments after -- go to pytest

What it does, each run:

1. installs the test dependencies of Continuum's suite (the ``conformance`` extra of
   this project's ``pyproject.toml``) into the running interpreter's environment;
2. downloads the SQLAlchemy-Continuum 2.0.0 sdist with pip into ``conformance/.download``
   (once; their code is never committed) and extracts its ``tests/`` and the pytest
   configuration of its ``pyproject.toml`` into ``conformance/.work``;
3. renames the import ``sqlalchemy_continuum`` to ``sqlalchemy_chronicle`` in those files,
   and changes nothing else;
4. for each database, recreates the ``main`` database their suite expects (and on MariaDB
   the ``'root'@'%'`` account their ``GRANT ... TO root`` needs, locked: it cannot log in),
   runs pytest with ``DB`` and ``DATABASE_URL`` set as their ``tests/__init__.py`` reads
   them, and records every test's outcome. ``postgres-native`` is their suite's own switch
   for native versioning (``DB=postgres-native``: every model gets
   ``native_versioning=True``, PostgreSQL triggers write the versions); it runs on the
   PostgreSQL server in a database of its own, ``main_native``;
5. prints passed/failed/errors/skipped per database and compares the tests that failed or
   errored with ``conformance/expected-failures.txt``. A failure not listed there, or a
   listed test that did not fail, fails the run (exit status 1).

Server URLs: ``CHRONICLE_CONFORMANCE_PG_URL`` and ``CHRONICLE_CONFORMANCE_MYSQL_URL``, by
default ``postgresql+psycopg://postgres@127.0.0.1:5432/main`` and
``mysql+pymysql://root@127.0.0.1:3306/main``. The runner drops and recreates the database,
so it only uses the URL's database when its name starts with ``main`` (``main_f``: a
developer's own); any other name is replaced by ``main``. pytest's output of
each database is kept in ``conformance/.work/<db>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DOWNLOAD_DIR = HERE / ".download"
WORK_DIR = HERE / ".work"
EXPECTED_FILE = HERE / "expected-failures.txt"

PACKAGE = "SQLAlchemy-Continuum"
VERSION = "2.0.0"
OLD_IMPORT, NEW_IMPORT = "sqlalchemy_continuum", "sqlalchemy_chronicle"

DATABASES = ("sqlite", "postgres", "postgres-native", "mysql")
#: Run when ``--db`` is not given (``postgres-native`` takes as long as ``postgres``
#: again: opt in with ``--db``).
DEFAULT_DATABASES = ("sqlite", "postgres", "mysql")
DEFAULT_URLS = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/main",
    "postgres-native": "postgresql+psycopg://postgres@127.0.0.1:5432/main",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/main",
}
URL_VARIABLES = {
    "postgres": "CHRONICLE_CONFORMANCE_PG_URL",
    "postgres-native": "CHRONICLE_CONFORMANCE_PG_URL",
    "mysql": "CHRONICLE_CONFORMANCE_MYSQL_URL",
}
#: Their suite's name of a mode -> the name of the server it runs on.
SERVERS = {"postgres-native": "postgres"}
#: Outcomes that count as "the test does not pass" and must be listed.
NOT_PASSING = ("failed", "error")


def log(message: str) -> None:
    print(f"[conformance] {message}", flush=True)


# -- dependencies and download ------------------------------------------------------------


def test_requirements() -> list[str]:
    """The ``conformance`` extra of the project's pyproject.toml."""
    import tomllib

    with open(PROJECT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return list(project["optional-dependencies"]["conformance"])


def install_requirements() -> None:
    requirements = test_requirements()
    log(f"installing the test dependencies: {' '.join(requirements)}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *requirements], check=True)


def sdist() -> Path:
    """The Continuum sdist, downloaded with pip on first use."""
    name = f"sqlalchemy_continuum-{VERSION}.tar.gz"
    path = DOWNLOAD_DIR / name
    if not path.exists():
        log(f"downloading the {PACKAGE} {VERSION} sdist")
        DOWNLOAD_DIR.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{PACKAGE}=={VERSION}",
                "-d",
                str(DOWNLOAD_DIR),
            ],
            check=True,
        )
    if not path.exists():
        sys.exit(f"pip did not save {name} in {DOWNLOAD_DIR}")
    return path


def extract(archive: Path) -> Path:
    """Extract their ``tests/`` and ``pyproject.toml`` into a fresh work directory and
    rename the import. Returns the directory to run pytest in."""
    target = WORK_DIR / "suite"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    prefix = f"sqlalchemy_continuum-{VERSION}/"
    renamed = 0
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix) :]
            if not (relative.startswith("tests/") or relative == "pyproject.toml"):
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if relative.endswith(".py"):
                text = data.decode("utf-8")
                renamed += text.count(OLD_IMPORT)
                data = text.replace(OLD_IMPORT, NEW_IMPORT).encode("utf-8")
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    log(f"extracted their tests into {target} ({renamed} imports renamed)")
    return target


# -- databases ------------------------------------------------------------------------------


def server_url(db: str) -> str:
    import sqlalchemy as sa

    url = sa.make_url(os.environ.get(URL_VARIABLES[db], DEFAULT_URLS[db]))
    name = url.database if url.database and url.database.startswith("main") else "main"
    if db.endswith("-native"):  # beside the plain mode's database: they run side by side
        name += "_native"
    return url.set(database=name).render_as_string(hide_password=False)


def prepare_database(db: str) -> None:
    """Recreate ``main`` (and drop their ``other`` schema), so that nothing a previous,
    interrupted run left behind makes their set-up fail."""
    import sqlalchemy as sa

    url = sa.make_url(server_url(db))
    assert url.database is not None and url.database.startswith("main"), url
    if SERVERS.get(db, db) == "postgres":
        engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        name = engine.dialect.identifier_preparer.quote(url.database)
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    else:
        engine = sa.create_engine(url.set(database="mysql"), isolation_level="AUTOCOMMIT")
        name = engine.dialect.identifier_preparer.quote(url.database)
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text("DROP DATABASE IF EXISTS other"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
            # Their set-up runs `GRANT ALL PRIVILEGES ON other.* TO root`, which names
            # 'root'@'%'. The account only has to exist: it is created locked.
            conn.execute(sa.text("CREATE USER IF NOT EXISTS 'root'@'%' ACCOUNT LOCK"))
    engine.dispose()


# -- running ----------------------------------------------------------------------------------


@dataclass
class Result:
    db: str
    outcomes: dict[str, str]
    seconds: float
    exit_code: int

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)


def run_suite(db: str, suite: Path, pytest_args: list[str], timeout_minutes: int) -> Result:
    env = dict(os.environ)
    env["DB"] = db
    env.pop("DATABASE_URL", None)
    if db != "sqlite":
        prepare_database(db)
        env["DATABASE_URL"] = server_url(db)
    report = WORK_DIR / f"{db}.json"
    report.unlink(missing_ok=True)
    env["CHRONICLE_CONFORMANCE_REPORT"] = str(report)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    logfile = WORK_DIR / f"{db}.log"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "-p",
        "chronicle_conformance_report",
        *pytest_args,
    ]
    log(f"DB={db}: running their suite (output in {logfile.relative_to(PROJECT)})")
    start = time.monotonic()
    with open(logfile, "wb") as out:
        try:
            code = subprocess.run(
                command,
                cwd=suite,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_minutes * 60,
            ).returncode
        except subprocess.TimeoutExpired:
            sys.exit(f"DB={db}: their suite did not finish in {timeout_minutes} minutes")
    seconds = time.monotonic() - start
    log(f"DB={db}: done in {seconds:.0f}s")
    if not report.exists():
        sys.exit(f"pytest wrote no report for DB={db} (exit {code}); see {logfile}")
    outcomes = json.loads(report.read_text())
    return Result(db, outcomes, seconds, code)


# -- expected failures ------------------------------------------------------------------------


def load_expected() -> dict[str, tuple[frozenset[str], str]]:
    """``test id | databases | reason`` per line; ``databases`` is ``all`` or a comma list."""
    expected: dict[str, tuple[frozenset[str], str]] = {}
    for number, raw in enumerate(EXPECTED_FILE.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ", 2)]
        if len(parts) != 3 or not all(parts):
            sys.exit(f"{EXPECTED_FILE.name}:{number}: expected 'test id | databases | reason'")
        test_id, dbs, reason = parts
        names = (
            frozenset(DATABASES) if dbs == "all" else frozenset(d.strip() for d in dbs.split(","))
        )
        if not names <= set(DATABASES):
            sys.exit(f"{EXPECTED_FILE.name}:{number}: unknown database in {dbs!r}")
        if test_id in expected:
            sys.exit(f"{EXPECTED_FILE.name}:{number}: {test_id} is listed twice")
        expected[test_id] = (names, reason)
    return expected


def compare(result: Result, expected: dict[str, tuple[frozenset[str], str]]) -> list[str]:
    """The problems of one database's run: unlisted failures and listed tests that passed."""
    problems = []
    listed = {t for t, (dbs, _) in expected.items() if result.db in dbs}
    for test_id, outcome in sorted(result.outcomes.items()):
        if outcome in NOT_PASSING and test_id not in listed:
            problems.append(f"{outcome.upper()} (not in the expected failures): {test_id}")
    for test_id in sorted(listed):
        outcome = result.outcomes.get(test_id, "not run")
        if outcome not in NOT_PASSING:
            problems.append(f"LISTED BUT {outcome.upper()} (remove it from the list): {test_id}")
    return problems


def summary(result: Result) -> str:
    counts = Counter(result.outcomes.values())
    ran = counts["passed"] + counts["failed"] + counts["error"]
    rate = 100.0 * counts["passed"] / ran if ran else 0.0
    return (
        f"DB={result.db}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['error']} errors, {counts['skipped']} skipped "
        f"({rate:.1f}% of {ran} run pass) in {result.seconds:.0f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--db",
        default=",".join(DEFAULT_DATABASES),
        help=(
            "comma-separated databases: sqlite, postgres, postgres-native, mysql "
            "(default: sqlite,postgres,mysql)"
        ),
    )
    parser.add_argument(
        "--no-install", action="store_true", help="skip installing the test dependencies"
    )
    parser.add_argument(
        "--jobs", type=int, default=len(DATABASES), help="databases run at once (default: 4)"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=40,
        help="minutes one database's run may take before it counts as failed (default: 40)",
    )
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = set(dbs) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database(s) {sorted(unknown)}; use {', '.join(DATABASES)}")

    if not args.no_install:
        install_requirements()
    suite = extract(sdist())
    expected = load_expected()
    # The databases run side by side: each test waits on its database as much as on
    # Python, so together they take little more than the slowest alone.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(
            pool.map(lambda db: run_suite(db, suite, args.pytest_args, args.timeout), dbs)
        )

    failed = False
    print()
    for result in results:
        problems = compare(result, expected) if not args.pytest_args else []
        print(summary(result))
        for problem in problems:
            print(f"  {problem}")
        if result.exit_code not in (0, 1):
            print(f"  pytest exited with {result.exit_code}: see {WORK_DIR / (result.db + '.log')}")
            failed = True
        failed = failed or bool(problems)
    if args.pytest_args:
        print("(pytest arguments given: the expected-failures list was not checked)")
    print("conformance: " + ("FAILED" if failed else "ok, every failure is on the expected list"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
