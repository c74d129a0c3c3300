"""Fetching a URL someone else chose, without letting them aim the server at its own network.

An image URL in ``POST /items`` is chosen by whoever holds the write key. A naive fetch lets
that person make the server talk to ``127.0.0.1``, the cloud metadata address or an intranet
service (server-side request forgery), follow a redirect there, use the error texts as a port
scanner, or hold a request open with slow answers. So every fetch here:

- accepts only ``http``/``https``;
- resolves the host itself (within the deadline), refuses any address that is not public
  (loopback, private, link-local, multicast, reserved, unspecified; IPv4-mapped, 6to4, Teredo
  and NAT64 IPv6 forms are unwrapped first) and then connects to *that* vetted address, with
  the name kept for the Host header, SNI and certificate check — no second lookup, so no
  DNS-rebinding gap;
- follows at most a few redirects, vetting every hop the same way;
- bounds connect and read waits, the whole URL (a watchdog closes the socket at the deadline,
  so a server dripping one byte at a time cannot outlast it) and, through a shared ``Budget``,
  a whole batch;
- stops reading past the byte cap;
- answers every failure with one generic ``FetchError`` text; the real reason is logged for the
  operator, never returned to the caller.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

log = logging.getLogger("shoprec.fetch")

#: The only text a caller ever sees for a failed fetch, whatever went wrong.
GENERIC_ERROR = "could not fetch the image URL"

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Private ranges an intranet may host images on (SHOPREC_ALLOW_PRIVATE_IMAGE_HOSTS). Loopback,
#: link-local (cloud metadata), multicast, reserved and unspecified stay refused regardless.
_INTRANET = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                 "100.64.0.0/10", "fc00::/7")]
#: getaddrinfo has no timeout of its own; it runs here so the deadline still holds.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shoprec-dns")


class FetchError(Exception):
    """A URL that could not be fetched safely. ``str()`` is always ``GENERIC_ERROR``."""

    def __init__(self, reason: str) -> None:
        super().__init__(GENERIC_ERROR)
        self.reason = reason  # for logs and tests only; never shown to API clients


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 3.0  # each connect and each read
    deadline_s: float = 5.0  # the whole URL, redirects included
    max_redirects: int = 3
    allow_private: bool = False


class Budget:
    """Seconds a whole batch may spend fetching, shared by every URL (and thread) of the batch."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends - time.monotonic()


def _unwrap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 form really reaches (IPv4-mapped, 6to4, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_allowed(address: str, allow_private: bool) -> bool:
    """May the server connect to this resolved address? Only public unicast, unless intranet is allowed."""
    try:
        ip = _unwrap(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return False  # a tunnel to an address we cannot vet
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if allow_private and any(ip in net for net in _INTRANET if net.version == ip.version):
        return True
    return ip.is_global and not ip.is_private


def _resolve(host: str, port: int, policy: FetchPolicy, ends: float) -> str:
    """One vetted address for host (the first one allowed), looked up within the deadline."""
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM).result(
            timeout=max(0.0, ends - time.monotonic()))
    except FutureTimeout as err:
        raise FetchError(f"resolving {host} timed out") from err
    except OSError as err:
        raise FetchError(f"resolving {host} failed: {err}") from err
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        if address_allowed(address, policy.allow_private):
            return address
    raise FetchError(f"{host} resolves to {addresses}, none of them a public address")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the vetted address; the Host header still names the host."""

    def __init__(self, host: str, port: int, address: str, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(host, port, timeout=read_timeout)
        self.address = address
        self.connect_timeout = connect_timeout
        self.raw: socket.socket | None = None
        self.expired = False

    def _open(self) -> socket.socket:
        raw = socket.create_connection((self.address, self.port), timeout=self.connect_timeout)
        raw.settimeout(self.timeout)
        self.raw = raw
        if self.expired:  # the watchdog fired while we were connecting and found no socket to shut
            raw.close()
            raise FetchError("deadline passed while connecting")
        return raw

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS to the vetted address, with SNI and the certificate checked against the host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(self._open(), server_hostname=self.host)


def _abort(conn: _PinnedHTTPConnection) -> None:
    """Watchdog: shut the socket so a blocked read returns now."""
    conn.expired = True
    if conn.raw is not None:
        try:
            conn.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _one_hop(url: str, policy: FetchPolicy, ends: float) -> tuple[int, str | None, bytes]:
    """GET one URL: (status, Location or None, body). Body is read only for a 200."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"scheme {parts.scheme!r} is not http(s)")
    if parts.username or parts.password:
        raise FetchError("credentials in the URL")
    if not parts.hostname:
        raise FetchError("no host in the URL")
    host = parts.hostname.encode("idna").decode("ascii")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve(host, port, policy, ends)
    left = ends - time.monotonic()
    if left <= 0:
        raise FetchError("deadline passed")
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = kind(host, port, address, min(policy.timeout_s, left), policy.timeout_s)
    watchdog = threading.Timer(left, _abort, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("GET", path, headers={"User-Agent": "shoprec-image-fetch", "Accept": "image/*",
                                           "Accept-Encoding": "identity", "Connection": "close"})
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            raise FetchError(f"HTTP {response.status}")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise FetchError(f"Content-Length {length} over {policy.max_bytes}")
        body = bytearray()
        while len(body) <= policy.max_bytes:
            if time.monotonic() >= ends:
                raise FetchError("deadline passed while reading")
            chunk = response.read(min(_CHUNK, policy.max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > policy.max_bytes:
            raise FetchError(f"body over {policy.max_bytes} bytes")
        if time.monotonic() >= ends:
            raise FetchError("deadline passed while reading")  # the watchdog may have cut the body short
        return 200, None, bytes(body)
    finally:
        watchdog.cancel()
        conn.close()


def fetch(url: str, policy: FetchPolicy, budget: Budget | None = None) -> bytes:
    """The body of ``url`` (a 200 after at most ``max_redirects`` vetted redirects), or FetchError."""
    ends = time.monotonic() + policy.deadline_s
    if budget is not None:
        ends = min(ends, budget.ends)
    try:
        if ends <= time.monotonic():
            raise FetchError("the batch's fetch budget is spent")
        current = url
        for _ in range(policy.max_redirects + 1):
            status, location, body = _one_hop(current, policy, ends)
            if status == 200:
                return body
            if not location:
                raise FetchError(f"HTTP {status} without Location")
            current = urljoin(current, location)
        raise FetchError(f"more than {policy.max_redirects} redirects")
    except FetchError as err:
        log.info("image fetch refused or failed: %s (%s)", url, err.reason)
        raise
    except Exception as err:  # noqa: BLE001 - any failure (socket, TLS, HTTP parsing, bad URL) is generic
        log.info("image fetch failed: %s (%s: %s)", url, type(err).__name__, err)
        raise FetchError(f"{type(err).__name__}: {err}") from err
