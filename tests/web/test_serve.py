"""``chronicle serve``: its errors, and the real server answering over HTTP."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .history import write_history
from .test_browser import _chronicle


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_chronicle(), "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_says_it_binds_to_localhost():
    out = serve("--help").stdout
    assert "--host HOST" in out and "default: 127.0.0.1" in out
    assert "--models MODULE:BASE" in out


def test_unreachable_database_is_a_clear_error():
    result = serve("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("chronicle serve: ")
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_unusable_url_and_models(tmp_path: Path):
    bad_url = serve("nonsense://x")
    assert bad_url.returncode == 2
    assert "cannot use the database URL 'nonsense://x'" in bad_url.stderr
    bad_models = serve(f"sqlite:///{tmp_path}/x.db", "--models", "no_such_module:Base")
    assert bad_models.returncode == 1
    assert "--models: cannot import 'no_such_module'" in bad_models.stderr


@pytest.mark.dbs("sqlite")
@pytest.mark.versioning(user_cls="User")
def test_serves_read_only_pages_over_http(base: Any, db: Any):
    history = write_history(base, db)
    proc = subprocess.Popen(
        [_chronicle(), "serve", str(db.engine.url), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in first, proc.stderr.read()  # type: ignore[union-attr]
        url = first.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + f"tx/{history.txs[0]}") as reply:
            assert reply.status == 200
            assert f"Transaction #{history.txs[0]}" in reply.read().decode()
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head) as reply:
            assert reply.status == 200 and reply.read() == b""
        for method in ("POST", "DELETE"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(urllib.request.Request(url, data=b"x", method=method))
            with error.value:
                assert error.value.code == 405
                assert error.value.headers["Allow"] == "GET, HEAD"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
