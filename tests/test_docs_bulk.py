"""docs/bulk.md shows what it promises (tests/test_docs.py runs its examples)."""

from __future__ import annotations

from docs_examples import expected_output, page_blocks

BLOCKS = page_blocks("bulk.md")


def test_page_has_an_example_of_each_statement_form() -> None:
    code = "\n".join(c for _, c in BLOCKS)
    for needle in (
        "session.execute(\n    sa.insert(Article),",  # ORM bulk insert
        "sa.update(Article).where(Article.status",  # WHERE on the column it changes
        "sa.update(Article).values(title=Article.title)",  # a no-op: no version
        "sa.delete(Article).where(",
        "session.query(Article).filter(Article.id == 2).update(",
        "session.execute(sa.update(Article), [{",  # bulk update by primary key
        "on_conflict_do_update(",
        "session.bulk_insert_mappings(Article",  # the legacy bulk methods
        "session.bulk_update_mappings(Article",
        "session.bulk_save_objects([",
    ):
        assert needle in code, needle
    for _, block in BLOCKS:
        assert expected_output(block), "each example should show what it prints"
