"""``chronicle serve URL``: the history browser on a local web server.

Runs the WSGI form of :mod:`sqlalchemy_chronicle.web` on the standard library's
``wsgiref`` server (one thread per request), bound to 127.0.0.1 unless told
otherwise: the pages have no login of their own::

    $ chronicle serve sqlite:///demo.db
    $ chronicle serve postgresql+psycopg://app@db/app --port 8080 --models app.models:Base

``--port 0`` picks a free port; the address served is printed on the first line.
Bound to this machine, it answers only requests addressed to it by a local name
(``Host: 127.0.0.1``, ``localhost``), so that no web page can read the history
through DNS rebinding.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import sqlalchemy as sa

from ..exc import ChronicleError
from ..web import history_pages
from ..web.wsgi import HistoryWSGIApp
from .cli_history import _load_models

__all__ = ["add_serve_command", "run_serve"]

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def add_serve_command(commands: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the ``chronicle`` parser's subparsers."""
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="browse the history in a web browser (read-only)",
        description=(
            "Serve a read-only web history browser of the database at URL: a timeline of "
            "transactions, each transaction's changes, and each entity's history with a "
            "diff of any two versions."
        ),
    )
    serve.add_argument("url", metavar="URL", help="SQLAlchemy database URL")
    serve.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: 8000; 0: any free)",
    )
    serve.add_argument(
        "--models", metavar="MODULE:BASE", default=None,
        help="read through the application's models (e.g. app.models:Base) instead of "
             "reflecting the tables",
    )
    serve.add_argument(
        "--schema", default=None, help="schema of the version tables (default: the default one)",
    )
    serve.add_argument(
        "--transaction-table", default="transaction", metavar="NAME",
        help="name of the transaction table (default: transaction)",
    )
    serve.add_argument("--title", default="History", help="title shown on the pages")
    serve.set_defaults(handler=run_serve)
    return serve


class _LocalHostsOnly:
    """Refuses requests whose ``Host`` is not this machine's own name.

    A page of another site cannot then read the history through DNS rebinding (its
    name resolving to 127.0.0.1): such requests carry that site's name as ``Host``.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        host = str(environ.get("HTTP_HOST", ""))
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name.lower() in _LOCAL_HOSTS:
            return self.app(environ, start_response)
        body = (f"chronicle serve answers only requests to {', '.join(sorted(_LOCAL_HOSTS))}"
                f", not to {host!r}.\n").encode()
        start_response("421 Misdirected Request", [
            ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
        ])
        return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def run_serve(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``chronicle serve`` with parsed ``args`` until interrupted; the exit status."""
    stream = out if out is not None else sys.stdout
    try:
        engine = sa.create_engine(args.url)
    except (sa.exc.ArgumentError, ImportError) as error:
        print(f"chronicle serve: cannot use the database URL {args.url!r}: {error}",
              file=sys.stderr)
        return 2
    shown = engine.url.render_as_string(hide_password=True)
    try:
        models = _load_models(args.models) if args.models else None
        pages = history_pages(
            engine, models=models, schema=args.schema,
            transaction_table=args.transaction_table, title=args.title,
        )
        # Read the layout now: a database that cannot be read fails here, not on the
        # first request.
        tables = pages.browser.versioned_tables()
    except ChronicleError as error:
        print(f"chronicle serve: {error}", file=sys.stderr)
        engine.dispose()
        return 1
    except sa.exc.SQLAlchemyError as error:
        print(f"chronicle serve: cannot read the database {shown}: {error}", file=sys.stderr)
        engine.dispose()
        return 1
    try:
        app: Any = HistoryWSGIApp(pages)
        if args.host in _LOCAL_HOSTS:
            app = _LocalHostsOnly(app)
        server = make_server(
            args.host, args.port, app,
            server_class=_Server, handler_class=_Handler,
        )
    except OSError as error:
        print(f"chronicle serve: cannot listen on {args.host}:{args.port}: {error}",
              file=sys.stderr)
        engine.dispose()
        return 1
    host = args.host if ":" not in args.host else f"[{args.host}]"
    counted = f"{len(tables)} versioned table{'' if len(tables) == 1 else 's'}"
    print(f"Serving the history of {shown} ({counted}) at "
          f"http://{host}:{server.server_port}/ (read-only; Ctrl+C to stop)",
          file=stream, flush=True)
    if args.host not in _LOCAL_HOSTS:
        print("chronicle serve: warning: the pages have no login and anyone who can reach "
              f"{args.host} can read the whole history.", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.dispose()
    return 0
