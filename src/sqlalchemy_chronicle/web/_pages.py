"""The pages of the history browser, independent of ASGI and WSGI.

:class:`HistoryPages` turns one request (method, path below the mount point, query
string, mount point) into a :class:`Response`. It only reads, through a
:class:`~sqlalchemy_chronicle.browse.HistoryBrowser`, and renders with Jinja2, which
it imports when the first page is rendered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..exc import ChronicleError, ConfigurationError, DatabaseUnavailable, HistoryNotFound
from ._urls import Request

if TYPE_CHECKING:
    from ..browse import HistoryBrowser
    from ._render import Renderer

__all__ = ["HistoryPages", "Response"]

#: The only methods served: everything is read-only.
ALLOWED_METHODS = ("GET", "HEAD")

#: Sent with every response: no scripts, no frames, nothing loaded from elsewhere.
SECURITY_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)

HTML = "text/html; charset=utf-8"

#: A transaction page lists at most this many changes (a bulk import can hold millions).
MAX_CHANGES_SHOWN = 500


@dataclass(frozen=True)
class Response:
    """A complete HTTP response: status, headers and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class BadRequest(Exception):
    """A query parameter cannot be understood; the page says which."""


class NotFound(Exception):
    """No such page, transaction, table or entity."""


class HistoryPages:
    """Route requests to the pages of the history browser and render them.

    :param browser: the reader, or a callable returning it (called once, on the first
        request, so that creating the app does not connect to the database).
    :param title: shown in the header and the window title.
    :param page_size: transactions per page of the timeline.
    """

    def __init__(
        self,
        browser: HistoryBrowser | Callable[[], HistoryBrowser],
        *,
        title: str = "History",
        page_size: int = 50,
    ) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ConfigurationError(
                f"history_app(page_size={page_size!r}): give a positive number of "
                f"transactions per page."
            )
        self.title = title
        self.page_size = page_size
        self._browser = browser
        self._renderer: Renderer | None = None
        self._lock = threading.Lock()

    # -- lazily built parts ---------------------------------------------------------------

    @property
    def browser(self) -> HistoryBrowser:
        """The reader (built on first use if a factory was given)."""
        browser = self._browser
        if callable(browser) and not _is_browser(browser):
            with self._lock:
                if callable(self._browser) and not _is_browser(self._browser):
                    self._browser = self._browser()
                browser = self._browser
        return browser  # type: ignore[return-value]

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            from ._render import Renderer  # Jinja2 is imported here, not at import time

            self._renderer = Renderer(self.title)
        return self._renderer

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, method: str, path: str, query_string: str, root: str = "") -> Response:
        """Answer one request; never raises for a bad request or a missing record."""
        method = method.upper()
        root = root.rstrip("/")
        request = Request(
            path=path or "/", root=root,
            query=parse_qs(query_string, keep_blank_values=False, max_num_fields=100),
        )
        if method not in ALLOWED_METHODS:
            response = self._error(request, 405, "Method not allowed",
                                   "This history browser is read-only: only GET and HEAD "
                                   "requests are served.")
            response = Response(405, (*response.headers, ("Allow", "GET, HEAD")), response.body)
        else:
            response = self._route(request)
        if method == "HEAD":
            response = Response(response.status, response.headers, b"")
        return response

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        try:
            if not parts:
                return self._html(200, self.timeline(request))
            if parts == ["static", "style.css"]:
                return Response(200, (
                    ("Content-Type", "text/css; charset=utf-8"),
                    ("Cache-Control", "public, max-age=3600"),
                    *SECURITY_HEADERS,
                ), self.renderer.stylesheet())
            if len(parts) == 2 and parts[0] == "tx":
                return self._html(200, self.transaction_page(request, parts[1]))
            if len(parts) == 2 and parts[0] == "entity":
                return self._html(200, self.entity_page(request, parts[1]))
            raise NotFound(f"There is no page at {request.path}.")
        except BadRequest as error:
            return self._error(request, 400, "Bad request", str(error))
        except NotFound as error:
            return self._error(request, 404, "Not found", str(error))
        except HistoryNotFound as error:  # an unknown table, transaction or entity
            return self._error(request, 404, "Not found", str(error))
        except DatabaseUnavailable as error:
            return self._error(request, 503, "Database unavailable", str(error))
        except ChronicleError as error:  # a value the reader cannot use, e.g. a bad key
            return self._error(request, 400, "Bad request", str(error))

    def _html(self, status: int, body: str) -> Response:
        return Response(status, (
            ("Content-Type", HTML), ("Cache-Control", "no-store"), *SECURITY_HEADERS,
        ), body.encode("utf-8"))

    def _error(self, request: Request, status: int, title: str, message: str) -> Response:
        page = self.renderer.render(
            "error.html", request=request, status=status, heading=title, message=message,
        )
        return self._html(status, page)

    # -- pages ----------------------------------------------------------------------------

    def timeline(self, request: Request) -> str:
        """The newest transactions, filtered, one page at a time."""
        browser = self.browser
        tables = browser.versioned_tables()
        table = request.arg("table")
        entity_id = request.arg("id")
        user = request.arg("user")
        since = _parse_time(request.arg("since"), "since", end=False)
        until = _parse_time(request.arg("until"), "until", end=True)
        before = _parse_int(request.arg("before"), "before")
        if table is not None and table not in tables:
            raise NotFound(f"The table {table!r} is not versioned in this database.")
        if entity_id is not None and table is None:
            raise BadRequest("An entity id filters the history of one table: choose the table.")
        page = browser.transactions(
            table=table, entity_id=entity_id, user=user, since=since, until=until,
            limit=self.page_size, before=before,
        )
        filters = {
            "table": table, "id": entity_id, "user": user,
            "since": request.arg("since"), "until": request.arg("until"),
        }
        older = (
            request.url("/", {**filters, "before": page.next_before})
            if page.next_before is not None else None
        )
        newest = request.url("/", filters) if before is not None else None
        return self.renderer.render(
            "timeline.html", request=request, tables=tables, filters=filters,
            filtered=any(v is not None for v in filters.values()),
            transactions=page.items, older=older, newest=newest,
        )

    def transaction_page(self, request: Request, tx: str) -> str:
        """Every change of one transaction, grouped by table."""
        tx_id = _parse_int(tx, "transaction id")
        if tx_id is None:
            raise NotFound("There is no transaction without an id.")
        detail = self.browser.transaction(tx_id)
        changes = list(detail.changes)
        return self.renderer.render(
            "transaction.html", request=request, tx=detail.summary,
            changes=changes[:MAX_CHANGES_SHOWN], hidden=max(0, len(changes) - MAX_CHANGES_SHOWN),
        )

    def entity_page(self, request: Request, table: str) -> str:
        """The whole history of one entity, and a diff of two of its versions."""
        browser = self.browser
        if table not in browser.versioned_tables():
            raise NotFound(f"The table {table!r} is not versioned in this database.")
        keys = [k.strip() for k in request.query.get("key", []) if k.strip()]
        if not keys:
            raise BadRequest("Say which entity: the page needs its primary key (?key=...).")
        key: Any = keys[0] if len(keys) == 1 else tuple(keys)
        history = browser.entity_history(table, key)
        if not history:
            raise NotFound(f"{table} {', '.join(keys)} has no history.")
        tx_ids = [c.transaction_id for c in history]
        from_tx = _parse_int(request.arg("from"), "from")
        to_tx = _parse_int(request.arg("to"), "to")
        for name, value in (("from", from_tx), ("to", to_tx)):
            if value is not None and value not in tx_ids:
                raise BadRequest(
                    f"{table} {', '.join(keys)} has no version in transaction {value} "
                    f"(the '{name}' of the diff)."
                )
        if to_tx is None:
            to_tx = tx_ids[-1]
        if from_tx is None:
            position = tx_ids.index(to_tx)
            from_tx = tx_ids[position - 1] if position > 0 else None
        diff = browser.diff(table, key, from_tx=from_tx, to_tx=to_tx)
        summaries = self._summaries(table, keys, key, tx_ids)
        key_params = [("key", k) for k in keys]
        key_names = browser.key_columns(table)
        return self.renderer.render(
            "entity.html", request=request, table=table, keys=keys, key_params=key_params,
            key_label=dict(zip(key_names, keys, strict=False)),
            history=list(reversed(history)), summaries=summaries,
            diff=diff, from_tx=from_tx, to_tx=to_tx,
        )

    def _summaries(
        self, table: str, keys: list[str], key: Any, tx_ids: list[int]
    ) -> dict[int, Any]:
        """Time and user of the transactions of one entity's history, by id."""
        found: dict[int, Any] = {}
        before: int | None = None
        wanted = set(tx_ids)
        # Keyset pages through the entity's transactions only; a long history takes a
        # few pages, never a scan of the whole version table.
        while wanted - found.keys():
            page = self.browser.transactions(
                table=table, entity_id=key, limit=max(self.page_size, 200), before=before,
            )
            found.update((t.id, t) for t in page.items)
            if page.next_before is None:
                break
            before = page.next_before
        return found


def _is_browser(obj: Any) -> bool:
    return hasattr(obj, "versioned_tables") and hasattr(obj, "transactions")


def _parse_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"The {name} must be a whole number, not {value!r}.") from None


def _parse_time(value: str | None, name: str, *, end: bool) -> datetime | None:
    """A time filter: ``YYYY-MM-DD`` or an ISO date and time; naive times are UTC.

    A bare date as the end of a range (exclusive) means the start of the next day,
    so that ``until=2026-01-31`` includes that day.
    """
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            moment = datetime.combine(day, time.min, timezone.utc)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise BadRequest(
            f"'{name}' must be a date (2026-01-31) or a date and time "
            f"(2026-01-31T14:30), not {value!r}."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
