"""A real Alembic project in a temporary directory, driven through ``alembic.command``.

``alembic init`` writes the project; its ``env.py`` gets the lines docs/migrations.md
shows; each test writes the models module that ``env.py`` imports. Every command
imports the models afresh (as a new ``alembic`` process would) and forgets them after,
so a test can change a model between two commands.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from sqlalchemy_chronicle import remove_versioning

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"


def docs_env_lines() -> str:
    """The lines docs/migrations.md tells a user to put in env.py (its ``<!-- env.py -->``
    block), with ``myapp.models`` as a placeholder for the models module."""
    match = re.search(r"<!-- env.py -->\n```python\n(.*?)^```", DOCS.read_text(), re.S | re.M)
    assert match is not None, "docs/migrations.md lost its env.py block"
    return match.group(1)


#: Alembic options for a project whose models live in several schemas: compare only the
#: schemas of the models (a server holds other schemas and databases too).
SCHEMA_OPTIONS = """\
        include_schemas=True,
        include_name=lambda name, type_, parent: (
            type_ != "schema" or name is None or name in models.SCHEMAS
        ),
"""


class Project:
    """One Alembic project on one database."""

    def __init__(
        self, root: Path, url: str, module: str, schemas: bool = False, batch: bool = False
    ) -> None:
        self.root = root
        self.module = module
        self.config = Config(str(root / "alembic.ini"))
        command.init(self.config, str(root / "migrations"))
        self.config = Config(str(root / "alembic.ini"))
        self.config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        env = root / "migrations" / "env.py"
        source = env.read_text()
        assert "target_metadata = None\n" in source
        lines = docs_env_lines().replace("myapp.models", module)
        source = source.replace("target_metadata = None\n", lines)
        if schemas:
            source = source.replace(
                "target_metadata=target_metadata\n",
                "target_metadata=target_metadata,\n" + SCHEMA_OPTIONS,
            )
            assert "include_schemas" in source
        if batch:  # SQLite alters a table by copying it (Alembic's "batch mode")
            source = source.replace(
                "target_metadata=target_metadata\n",
                "target_metadata=target_metadata, render_as_batch=True\n",
            )
            assert "render_as_batch" in source
        env.write_text(source)
        self.revisions: list[str] = []

    def write_models(self, source: str) -> None:
        (self.root / f"{self.module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sys.path.insert(0, str(self.root))
        try:
            return fn(self.config, *args, **kwargs)
        finally:
            sys.path.remove(str(self.root))
            self.forget_models()

    def forget_models(self) -> None:
        models = sys.modules.pop(self.module, None)
        if models is not None:
            # The default manager unless the models made their own.
            remove_versioning(**({"manager": models.manager} if hasattr(models, "manager") else {}))
            models.Base.registry.dispose()

    def autogenerate(self, message: str) -> str:
        """``alembic revision --autogenerate``; return the text of the file it wrote."""
        script = self._run(command.revision, message=message, autogenerate=True)
        path = Path(script.path)
        source = path.read_text()
        compile(source, str(path), "exec")  # the migration is valid Python
        self.revisions.append(script.revision)
        return source

    def write_migration(self, message: str, upgrade: str, downgrade: str) -> str:
        """``alembic revision`` (no autogenerate), with the bodies a user writes."""
        script = self._run(command.revision, message=message)
        path = Path(script.path)
        source = path.read_text()
        for name, body in (("upgrade", upgrade), ("downgrade", downgrade)):
            head = f'    """{name.capitalize()} schema."""\n    pass\n'
            assert head in source
            source = source.replace(
                head, f'    """{name.capitalize()} schema."""\n' + textwrap.indent(
                    textwrap.dedent(body), "    "
                )
            )
        path.write_text(source)
        self.revisions.append(script.revision)
        return script.revision

    def upgrade(self, target: str = "head") -> None:
        self._run(command.upgrade, target)

    def downgrade(self, target: str) -> None:
        self._run(command.downgrade, target)

    def check(self) -> None:
        """``alembic check``: raises when autogenerate would write anything."""
        self._run(command.check)

    def drop_enum(self, name: str, schema: str | None = None) -> None:
        """What the Alembic docs tell a user to add to a downgrade that drops the last
        table using a PostgreSQL enum type: Alembic renders no DROP TYPE."""
        engine = sa.create_engine(self.config.get_main_option("sqlalchemy.url") or "")
        try:
            with engine.begin() as conn:
                sa.Enum(name=name, schema=schema).drop(conn, checkfirst=True)
        finally:
            engine.dispose()

    def heads(self) -> list[str]:
        return list(ScriptDirectory.from_config(self.config).get_heads())

    def models(self) -> Any:
        """Import the models as the application would (forget them with forget_models)."""
        sys.path.insert(0, str(self.root))
        try:
            module = importlib.import_module(self.module)
        finally:
            sys.path.remove(str(self.root))
        sa.orm.configure_mappers()
        return module


def drop_everything(engine: sa.Engine, schemas: list[str | None]) -> None:
    """Remove what a test's migrations left behind (tables, enum types)."""
    with engine.begin() as conn:
        for schema in schemas:
            if schema is not None and not sa.inspect(conn).has_schema(schema):
                continue
            metadata = sa.MetaData(schema=schema)
            metadata.reflect(conn)
            metadata.drop_all(conn)
        if engine.dialect.name == "postgresql":
            enums = conn.execute(sa.text(
                "SELECT n.nspname, t.typname FROM pg_type t "
                "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'e' "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            )).all()
            preparer = engine.dialect.identifier_preparer
            for schema, name in enums:
                conn.execute(sa.text(
                    f"DROP TYPE {preparer.quote_schema(schema)}.{preparer.quote(name)}"
                ))
            # The trigger functions dropping a table leaves (native versioning).
            functions = conn.execute(sa.text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND (p.proname LIKE '%!_audit' ESCAPE '!' "
                "OR p.proname LIKE 'chronicle!_%' ESCAPE '!')"
            )).scalars().all()
            for function in functions:
                conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {function}"))


def iter_nonempty_lines(source: str) -> Iterator[str]:
    for line in source.splitlines():
        if line.strip():
            yield line
