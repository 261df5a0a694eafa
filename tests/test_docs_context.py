"""docs/context.md shows what it promises (tests/test_docs.py runs its examples)."""

from __future__ import annotations

from docs_examples import expected_output, page_blocks

BLOCKS = page_blocks("context.md")


def test_page_shows_every_way_to_set_the_context() -> None:
    code = "\n".join(c for _, c in BLOCKS)
    for needle in (
        'make_versioned(user_cls="User"',
        "with versioning_context(user_id=1, remote_addr=",  # the context manager
        "@versioning_context(user_id=2",  # decorator on a function
        "async def publish",  # ... and on a coroutine function
        "asyncio.gather(",  # concurrent tasks
        "Middleware(VersioningMiddleware",  # ASGI / Starlette
        "VersioningWSGIMiddleware(",  # WSGI
        "FlaskPlugin()",  # Flask-Login
    ):
        assert needle in code, needle
    for _, block in BLOCKS:
        assert expected_output(block), "each example should show what it prints"
