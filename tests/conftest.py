"""Shared fixtures: a generated bilingual demo shop, indexed once per session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory) -> tuple[Path, Path]:
    from shoprec.demo_data import build_demo_catalog

    return build_demo_catalog(tmp_path_factory.mktemp("demo-shop"))


@pytest.fixture(scope="session")
def indexed_demo(demo_shop, tmp_path_factory):
    """A Shoprec service over the demo shop with its events ingested (shared, read-mostly)."""
    from shoprec.config import Settings
    from shoprec.service import Shoprec

    catalog, events = demo_shop
    service = Shoprec(Settings(store=tmp_path_factory.mktemp("demo-store")))
    report = service.index_catalog(catalog, progress=False)
    assert report.indexed == 48 and not report.row_errors
    service.ingest_events_file(events)
    yield service
    service.close()


def hm_catalog() -> Path:
    path = HM_DIR / "catalog.jsonl"
    if not path.is_file():
        pytest.skip(f"H&M sample data not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards. Needs
    SHOPREC_TEST_DATABASE_URL (scripts/test.sh starts a throw-away server and sets it)."""
    import uuid

    base = os.environ.get("SHOPREC_TEST_DATABASE_URL")
    if not base:
        pytest.skip("needs PostgreSQL: set SHOPREC_TEST_DATABASE_URL (scripts/test.sh starts a throw-away one)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def serve_process(tmp_path) -> Iterator[Callable[..., tuple[subprocess.Popen, int]]]:
    """Start a real ``shoprec serve`` (uvicorn) on a store, with extra environment, on ``port`` (a
    free one by default); returns (process, port) once it answers /health. Whatever still runs at
    the end of the test is stopped."""
    import socket
    import sys
    import time
    import urllib.request

    started: list[subprocess.Popen] = []

    def start(store: Path, port: int | None = None, **env: str) -> tuple[subprocess.Popen, int]:
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        log = tmp_path / f"serve-{port}-{len(started)}.log"
        full = {**os.environ, "SHOPREC_PROFILE_VECTOR": "text", "SHOPREC_RANKER": "blend", **env,
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                               os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "serve", "--port", str(port),
                                 "--store", str(store)], env=full, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        started.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        return proc, port
            except OSError:
                time.sleep(0.1)
        proc.kill()
        raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


class TcpProxy:
    """A TCP forwarder in front of a server: ``down()`` drops every connection and refuses new
    ones (what a restarting or unreachable PostgreSQL looks like to its clients), ``up()`` serves again."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self._serving = threading.Event()
        self._serving.set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._serving.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def down(self) -> None:
        import socket

        self._serving.clear()
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    def up(self) -> None:
        self._serving.set()

    def close(self) -> None:
        self.down()
        self._server.close()


@pytest.fixture
def pg_proxy(pg_url) -> Iterator[tuple[str, TcpProxy]]:
    """``pg_url`` through a TcpProxy: (the URL through it, the proxy) to take PostgreSQL away and back."""
    from urllib.parse import urlsplit

    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield pg_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1), proxy
    proxy.close()
