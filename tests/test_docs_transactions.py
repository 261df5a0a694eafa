"""docs/transactions.md shows what it promises (tests/test_docs.py runs its examples)."""

from __future__ import annotations

from docs_examples import expected_output, page_blocks

BLOCKS = page_blocks("transactions.md")


def test_page_has_the_examples_the_issue_asks_for() -> None:
    code = "\n".join(c for _, c in BLOCKS)
    for needle in (
        'make_versioned(\n    user_cls="User"',
        "Transaction.user_id == 5, Transaction.issued_at >= week_ago",  # by user, last week
        "ArticleVersion.transaction_id == 2",  # what changed in a transaction
        "ArticleVersion.id == article.id",  # the transactions of an article
        "TransactionChanges.entity_name",
        "tx.entity_names",
        "tx.changed_entities",
        "TransactionMeta.key",
        'tx.meta = {"ticket": "T-42"}',
        "uow.create_transaction(session)",
        'versioning_context(user_id=6, reason="typo")',
    ):
        assert needle in code, needle
    for _, block in BLOCKS:
        assert expected_output(block), "each example should show what it prints"
