"""``chronicle serve URL``: the history browser on a local web server.

Runs :func:`~sqlalchemy_chronicle.web.history_wsgi_app` on the standard library's
``wsgiref`` server (one thread per request), bound to 127.0.0.1 unless told
otherwise: the pages have no login of their own::

    $ chronicle serve sqlite:///demo.db
    $ chronicle serve postgresql+psycopg://app@db/app --port 8080 --models app.models:Base

``--port 0`` picks a free port; the address served is printed on the first line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from socketserver import ThreadingMixIn
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import sqlalchemy as sa

from ..exc import ChronicleError, ConfigurationError

__all__ = ["add_serve_command", "load_models", "run_serve"]

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def add_serve_command(commands: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the ``chronicle`` parser's subparsers."""
    serve = commands.add_parser(
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
    serve.add_argument("--title", default="History", help="title shown on the pages")
    serve.set_defaults(run=run_serve)
    return serve


def load_models(spec: str) -> Any:
    """The object named by ``package.module:attribute`` (imported from the current
    directory too)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--models {spec!r}: give it as package.module:Base (a module, a colon and "
            f"the declarative base or MetaData in it)."
        )
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"--models {spec!r}: cannot import {module_name}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"--models {spec!r}: {module_name} has no attribute {attribute!r}."
            ) from None
    return target


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def run_serve(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``chronicle serve`` with parsed ``args`` until interrupted; the exit status."""
    from . import history_pages
    from .wsgi import HistoryWSGIApp

    stream = out if out is not None else sys.stdout
    try:
        engine = sa.create_engine(args.url)
    except (sa.exc.ArgumentError, ImportError) as error:
        print(f"chronicle serve: cannot use the database URL {args.url!r}: {error}",
              file=sys.stderr)
        return 2
    shown = engine.url.render_as_string(hide_password=True)
    try:
        models = load_models(args.models) if args.models else None
        pages = history_pages(engine, models=models, title=args.title)
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
        server = make_server(
            args.host, args.port, HistoryWSGIApp(pages),
            server_class=_Server, handler_class=_Handler,
        )
    except OSError as error:
        print(f"chronicle serve: cannot listen on {args.host}:{args.port}: {error}",
              file=sys.stderr)
        engine.dispose()
        return 1
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"Serving the history of {shown} ({len(tables)} versioned tables) at "
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
