"""docs/migrations.md shows what it promises (tests/test_docs.py runs its example; the
end-to-end tests of tests/integrations/test_alembic.py use its env.py lines)."""

from __future__ import annotations

from docs_examples import ROOT, page_blocks
from integrations.alembic_project import docs_env_lines

PAGE = (ROOT / "docs" / "migrations.md").read_text(encoding="utf-8")


def test_env_py_is_one_import_and_one_line() -> None:
    lines = [line for line in docs_env_lines().splitlines() if line.strip()]
    assert lines == [
        "import myapp.models as models",
        "from sqlalchemy_chronicle.integrations.alembic import versioned_metadata",
        "target_metadata = versioned_metadata(models.Base.metadata)",
    ]


def test_page_covers_every_helper_and_the_continuum_move() -> None:
    for needle in (
        "backfill(op, Article)",
        "update_end_tx_column(table",
        "update_property_mod_flags(table",
        "## Coming from SQLAlchemy-Continuum",
        "alembic check",
        "new_column_name=",  # a rename is written by hand, for both tables
        "render_as_batch=True",
        "include_schemas=True",
    ):
        assert needle in PAGE, needle
    (_, example), = page_blocks("migrations.md")
    assert "backfill(op, models.Article)" in example
    assert "command.check(config)" in example
