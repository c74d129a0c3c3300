"""Images cannot be turned against the server (shoprec issue 9).

- remote fetching is off by default; when on, the server cannot be aimed at its own network
  (directly or through a redirect), slow or huge answers are cut off, and every failure reads
  the same, so errors cannot map hosts and ports;
- an upload whose header promises a very long or thin picture is refused before decoding
  (it used to be decoded and padded to a square: 1x3,000,000 px -> MemoryError after 21 s);
- a NUL byte in an image path is a per-item image error, not a 500;
- image_url percent-encodes the id and /images decodes it.
"""

from __future__ import annotations

import io
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shoprec import safe_fetch
from shoprec.catalog import Product
from shoprec.config import Settings
from shoprec.encoders import preprocess as preprocess_module
from shoprec.http import create_app
from shoprec.images import ImageError, ImageLimits, decode_image, image_fingerprint, load_image, resolve_local
from shoprec.results import image_url
from shoprec.safe_fetch import GENERIC_ERROR, FetchError, FetchPolicy, address_allowed, fetch


def png_bytes(size=(64, 64), colour=(30, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


# ================================================================ a local web server to aim at
class _Handler(BaseHTTPRequestHandler):
    """/img.png a photo; /host echoes the Host header; /to?url=U a 302 to U; /big N bytes; /endless bytes until hung up;
    /slow answers only after the test ends; /drip a 200 whose body comes one byte at a time."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.paths.append(self.path)
        if self.path == "/img.png":
            body = png_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/host":
            body = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/to?url="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to?url="))
            self.end_headers()
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(2_000_000))
            self.end_headers()
            self.wfile.write(b"\0" * 2_000_000)
        elif self.path == "/endless":  # no Content-Length: only a streaming cap can stop it
            self.send_response(200)
            self.end_headers()
            try:
                while not server.done.is_set():
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif self.path == "/slow":
            server.done.wait(60)
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):  # 1000 x 0.05 s: each read is quick, the whole is not
                    if server.done.wait(0.05):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:
                pass
        else:
            self.send_response(404)
            self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []
        self.done = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.done.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def loopback_allowed(monkeypatch) -> None:
    """Let fetches reach the local test server (every other check stays in place)."""
    monkeypatch.setattr(safe_fetch, "address_allowed", lambda address, allow_private: True)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ================================================================ 1. SSRF
def test_remote_images_are_off_by_default(monkeypatch, server, tmp_path):
    monkeypatch.delenv("SHOPREC_ALLOW_REMOTE_IMAGES", raising=False)
    assert Settings().allow_remote_images is False and Settings().allow_private_image_hosts is False
    assert ImageLimits().allow_remote is False
    with pytest.raises(ImageError, match="remote images are disabled"):
        load_image(server.url("/img.png"), tmp_path, ImageLimits())
    assert server.paths == []  # nothing was even asked


def test_loopback_is_refused_before_connecting(server):
    policy = FetchPolicy()
    port = server.server_address[1]
    for url in (server.url("/img.png"), f"http://localhost:{port}/img.png", f"http://[::1]:{port}/img.png",
                f"http://[::ffff:127.0.0.1]:{port}/img.png", f"http://0.0.0.0:{port}/img.png"):
        with pytest.raises(FetchError) as caught:
            fetch(url, policy)
        assert str(caught.value) == GENERIC_ERROR
    assert server.paths == []


def test_a_redirect_to_loopback_is_refused(monkeypatch, server):
    """The first hop is let through (as if it were a public server); its redirect to an admin path is not."""
    calls: list[str] = []

    def first_hop_only(address: str, allow_private: bool) -> bool:
        calls.append(address)
        return len(calls) == 1

    monkeypatch.setattr(safe_fetch, "address_allowed", first_hop_only)
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/to?url=" + server.url("/admin/delete-everything")), FetchPolicy())
    assert str(caught.value) == GENERIC_ERROR
    assert server.paths == ["/to?url=" + server.url("/admin/delete-everything")]  # the admin path never hit
    assert len(calls) == 2  # the redirect's target was vetted again


def test_connects_to_the_address_it_vetted(monkeypatch, loopback_allowed, server):
    """The name is looked up once; the connection goes to that address (no second lookup to rebind)."""
    import socket

    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake_dns(host, *args, **kwargs):
        if host == "photos.example":
            lookups.append(host)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    port = server.server_address[1]
    assert fetch(f"http://photos.example:{port}/host", FetchPolicy()) == f"photos.example:{port}".encode()
    assert lookups == ["photos.example"]


def test_redirects_are_bounded(loopback_allowed, server):
    assert fetch(server.url("/to?url=/img.png"), FetchPolicy()) == png_bytes()  # one hop is fine
    server.paths.clear()
    chain = "/img.png"
    for _ in range(4):
        chain = "/to?url=" + chain
    with pytest.raises(FetchError, match=GENERIC_ERROR) as caught:
        fetch(server.url(chain), FetchPolicy(max_redirects=3))
    assert "redirects" in caught.value.reason
    assert len(server.paths) == 4 and "/img.png" not in server.paths  # 1 + 3 redirects, the 4th not followed


def test_bytes_are_capped_while_streaming(loopback_allowed, server):
    with pytest.raises(FetchError) as declared:
        fetch(server.url("/big"), FetchPolicy(max_bytes=100_000))
    assert "Content-Length" in declared.value.reason
    with pytest.raises(FetchError) as streamed:
        fetch(server.url("/endless"), FetchPolicy(max_bytes=100_000, deadline_s=30))
    assert "over 100000" in streamed.value.reason  # stopped by the cap, not by the deadline


def test_slow_servers_are_cut_off(loopback_allowed, server):
    started = time.monotonic()
    with pytest.raises(FetchError) as silent:
        fetch(server.url("/slow"), FetchPolicy(timeout_s=0.5, deadline_s=5))
    assert "timed out" in silent.value.reason
    # Each byte arrives well within the read timeout; only the whole-URL deadline can stop it.
    with pytest.raises(FetchError) as drip:
        fetch(server.url("/drip"), FetchPolicy(timeout_s=2, deadline_s=0.5))
    assert "deadline" in drip.value.reason or "Incomplete" in drip.value.reason
    assert time.monotonic() - started < 10  # generous: the two would take 60 s and 50 s uncut


def test_every_failure_reads_the_same(loopback_allowed, server):
    failures = [server.url("/missing"), f"http://127.0.0.1:{_closed_port()}/img.png", server.url("/big"),
                "ftp://127.0.0.1/img.png", "http:///img.png", "http://no-such-host.invalid/img.png",
                "http://127.0.0.1:notaport/", "http://a\x00b/img.png"]
    for url in failures:
        with pytest.raises(FetchError) as caught:
            fetch(url, FetchPolicy(max_bytes=1000, deadline_s=3))
        assert str(caught.value) == GENERIC_ERROR, url
    assert fetch(server.url("/img.png"), FetchPolicy()) == png_bytes()


@pytest.mark.parametrize(("address", "public", "intranet"), [
    ("93.184.215.14", True, True),
    ("2606:4700:4700::1111", True, True),
    ("127.0.0.1", False, False),
    ("127.8.9.10", False, False),
    ("::1", False, False),
    ("0.0.0.0", False, False),
    ("::", False, False),
    ("169.254.169.254", False, False),  # cloud metadata
    ("fe80::1", False, False),
    ("224.0.0.1", False, False),
    ("ff02::1", False, False),
    ("240.0.0.1", False, False),
    ("255.255.255.255", False, False),
    ("::ffff:127.0.0.1", False, False),
    ("::ffff:169.254.169.254", False, False),
    ("2002:7f00:1::", False, False),  # 6to4 around 127.0.0.1
    ("64:ff9b::a9fe:a9fe", False, False),  # NAT64 around 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False, False),  # Teredo
    ("10.1.2.3", False, True),
    ("172.16.0.9", False, True),
    ("192.168.1.1", False, True),
    ("100.64.0.1", False, True),
    ("fd00::1", False, True),
    ("::ffff:10.0.0.1", False, True),
    ("not an address", False, False),
])
def test_address_policy(address, public, intranet):
    assert address_allowed(address, allow_private=False) is public
    assert address_allowed(address, allow_private=True) is intranet


@pytest.fixture
def write_client(indexed_demo, demo_shop) -> Iterator[TestClient]:
    catalog, _ = demo_shop
    settings = indexed_demo.settings.model_copy(update={"image_root": catalog.parent})
    with TestClient(create_app(settings, service=indexed_demo)) as c:
        yield c


def _enable_remote(monkeypatch, service, **settings) -> None:
    indexer = service.indexer
    monkeypatch.setattr(indexer, "limits", replace(indexer.limits, allow_remote=True))
    monkeypatch.setattr(indexer, "settings", indexer.settings.model_copy(update=settings))


def test_post_items_cannot_probe_the_servers_network(monkeypatch, indexed_demo, write_client, server):
    _enable_remote(monkeypatch, indexed_demo)
    items = [{"id": "ssrf-open", "title": "probe open port", "image": server.url("/img.png")},
             {"id": "ssrf-closed", "title": "probe closed port",
              "image": f"http://127.0.0.1:{_closed_port()}/img.png"},
             {"id": "ssrf-metadata", "title": "probe metadata", "image": "http://169.254.169.254/latest/meta-data/"}]
    try:
        response = write_client.post("/items", json=items)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["indexed"] == 3  # indexed by their text, photos refused
        assert sorted((e["index"], e["field"], e["message"]) for e in body["image_errors"]) == [
            (0, "image", GENERIC_ERROR), (1, "image", GENERIC_ERROR), (2, "image", GENERIC_ERROR)]
        assert server.paths == []
    finally:
        indexed_demo.delete_items([item["id"] for item in items])


def test_slow_urls_cannot_hold_a_batch(monkeypatch, loopback_allowed, indexed_demo, write_client, server):
    """Four URLs that never answer used to hold POST /items 20.9 s; the batch budget bounds it."""
    _enable_remote(monkeypatch, indexed_demo, remote_image_batch_budget_s=1.0)
    items = [{"id": f"slow-{i}", "title": f"slow photo {i}", "image": server.url("/slow")} for i in range(4)]
    try:
        started = time.monotonic()
        response = write_client.post("/items", json=items)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["indexed"] == 4
        assert [e["message"] for e in body["image_errors"]] == [GENERIC_ERROR] * 4
        assert elapsed < 10, elapsed  # generous: 1 s budget (+ text encoding) instead of 20.9 s
    finally:
        indexed_demo.delete_items([item["id"] for item in items])


# ================================================================ 2. long, thin pictures
def solid_png(width: int, height: int) -> bytes:
    """A one-colour RGB PNG written row by row (tiny in memory, however large the picture)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" + b"\xc8" * (3 * width)  # filter byte + pixels
    compressed = [packer.compress(row) for _ in range(height)]
    compressed.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(compressed))
            + chunk(b"IEND", b""))


def _rss_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match, field
    return int(match.group(1))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc to read RSS")
def test_long_thin_uploads_are_refused_fast_and_cheaply(monkeypatch, indexed_demo, write_client):
    """The probe's two PNGs: 1x3,000,000 px (a 500 MemoryError after 21 s) and 20000x1950 (3.0 GB peak).

    Both pass the old 40 M pixel limit, which is kept here to show the side cap alone stops them.
    """
    indexer = indexed_demo.indexer
    monkeypatch.setattr(indexer, "limits", replace(indexer.limits, max_pixels=40_000_000))
    thin, wide = solid_png(1, 3_000_000), solid_png(20_000, 1_950)
    assert len(thin) < 20_000 and len(wide) < 200_000  # small files, as in the report
    warm = write_client.post("/search", files={"image": ("ok.png", png_bytes(), "image/png")})
    assert warm.status_code == 200, warm.text
    try:  # reset the peak (VmHWM) so it measures these requests only
        Path("/proc/self/clear_refs").write_text("5")
        peak_field = "VmHWM"
    except OSError:
        peak_field = "VmRSS"
    before = _rss_kib("VmRSS")
    for name, data in (("thin.png", thin), ("wide.png", wide)):
        started = time.monotonic()
        response = write_client.post("/search", files={"image": (name, data, "image/png")})
        elapsed = time.monotonic() - started
        assert 400 <= response.status_code < 500, response.text
        assert {e["field"] for e in response.json()["errors"]} == {"image"}
        assert "longer side" in response.json()["detail"]
        assert elapsed < 5, elapsed  # generous: the issue asks for < 1 s, it took 21 s
    grown_mib = (_rss_kib(peak_field) - before) / 1024
    assert grown_mib < 100, f"RSS grew {grown_mib:.0f} MiB"


def test_header_limits_and_working_size():
    limits = ImageLimits()
    with pytest.raises(ImageError, match="longer side"):
        decode_image(solid_png(10_001, 600), limits)
    with pytest.raises(ImageError, match="20:1"):
        decode_image(solid_png(2_100, 100), limits)
    with pytest.raises(ImageError, match="pixel limit"):
        decode_image(solid_png(4_000, 4_000), replace(limits, max_pixels=10_000_000))
    assert decode_image(solid_png(2_000, 100), limits).size == (1024, 51)  # exactly 20:1 passes, reduced
    small = decode_image(png_bytes((300, 200)), limits)
    assert small.size == (300, 200) and small.mode == "RGB"  # small photos stay as they are
    buf = io.BytesIO()
    Image.new("RGB", (6_000, 4_000), (10, 200, 10)).save(buf, format="JPEG", quality=80)
    photo = decode_image(buf.getvalue(), limits)
    assert photo.size == (1024, 683) and photo.mode == "RGB"
    palette = Image.new("RGB", (3_000, 1_500), (200, 10, 10)).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert decode_image(buf.getvalue(), limits).size == (1024, 512)


def test_preprocess_shrinks_before_padding(monkeypatch):
    """Even a large picture handed straight to an encoder is never letterboxed at full size."""
    seen: list[tuple[int, int]] = []
    original = preprocess_module.to_square

    def spy(image, fit):
        seen.append(image.size)
        return original(image, fit)

    monkeypatch.setattr(preprocess_module, "to_square", spy)
    array = preprocess_module.preprocess(Image.new("RGB", (8_000, 780), (50, 50, 50)), size=224)
    assert array.shape == (3, 224, 224)
    assert seen == [(896, 87)]


# ================================================================ 3. NUL bytes in image paths
def test_nul_byte_in_an_image_path_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="NUL"):
        resolve_local("a\x00b.png", tmp_path)
    with pytest.raises(ImageError, match="NUL"):
        load_image("images/a\x00b.png", tmp_path, ImageLimits())
    assert image_fingerprint("a\x00b.png", tmp_path) == "a\x00b.png:missing"


def test_nul_byte_in_post_items_names_the_field(write_client):
    response = write_client.post("/items", json=[{"id": "nul-photo", "title": "x", "image": "images/a\u0000b.png"}])
    assert response.status_code == 422, response.text
    assert [(e["index"], e["field"]) for e in response.json()["rejected"]] == [(0, "image")]


def test_nul_byte_while_indexing_loses_only_the_photo(indexed_demo, demo_shop):
    """The catalog path (indexer): the item is indexed by text and its photo reported."""
    base = demo_shop[0].parent
    try:
        report = indexed_demo.upsert_items([Product(id="nul-catalog", title="NUL photo", image="a\x00b.png")], base)
        assert report.indexed == 1
        assert [(e.item_id, "NUL" in e.reason) for e in report.image_errors] == [("nul-catalog", True)]
    finally:
        indexed_demo.delete_items(["nul-catalog"])


# ================================================================ 4. image_url encodes the id
def test_image_url_encodes_the_id_and_the_route_decodes_it(indexed_demo, write_client):
    item_id = "odd?id#part/two x 中文"
    assert image_url(item_id, {"image": "x.png"}) == "/images/" + quote(item_id, safe="")
    assert image_url(item_id, {"image": "x.png"}) == "/images/odd%3Fid%23part%2Ftwo%20x%20%E4%B8%AD%E6%96%87"
    posted = write_client.post("/items", json=[{"id": item_id, "title": "zqxv encoded id probe",
                                                "image": "images/tshirt-black.png"}])
    try:
        assert posted.status_code == 200 and posted.json()["indexed"] == 1, posted.text
        found = write_client.post("/search", params={"k": 100}, data={"q": "zqxv encoded id probe"}).json()
        url = next(r["image_url"] for r in found["results"] if r["id"] == item_id)
        photo = write_client.get(url)
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
        assert photo.content == write_client.get("/images/tshirt-black").content
    finally:
        indexed_demo.delete_items([item_id])
    assert write_client.get(url).status_code == 404
