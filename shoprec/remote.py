"""The CLI's query commands sent to a running ``shoprec serve`` over its HTTP API.

The embedded store is single-writer: while a server holds it, another process cannot open it.
``shoprec similar ID --url http://HOST:PORT`` asks that server instead and prints the same
results. Built on the standard library (urllib), so a remote query imports nothing heavy.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

from shoprec.errors import RemoteError

#: Seconds to wait for the server (a first search may load the text encoder there).
TIMEOUT_S = 60.0


class Remote:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RemoteError(f"--url must look like http://HOST:PORT, not {url!r}")
        self.base = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ queries
    def similar(self, item_id: str, k: int, modality: str, flt: dict[str, Any]) -> dict[str, Any]:
        return self._results("GET", f"/items/{_segment(item_id)}/similar", {"k": k, "modality": modality, **flt})

    def complementary(self, item_ids: Sequence[str], k: int, flt: dict[str, Any]) -> dict[str, Any]:
        if len(item_ids) == 1:
            return self._results("GET", f"/items/{_segment(item_ids[0])}/complementary", {"k": k, **flt})
        return self._results("POST", "/cart/complementary", {"k": k, **flt},
                             body=json.dumps({"item_ids": list(item_ids)}).encode(),
                             content_type="application/json")

    def recommend(self, user_id: str, k: int, context_item: str | None, exclude_purchased: bool,
                  flt: dict[str, Any]) -> dict[str, Any]:
        query = {"k": k, "exclude_purchased": exclude_purchased, **flt}
        if context_item:
            query["context_item"] = context_item
        return self._results("GET", f"/users/{_segment(user_id)}/recommendations", query)

    def search(self, text: str | None, image: Path | None, k: int, flt: dict[str, Any]) -> dict[str, Any]:
        fields = {"q": text} if text else {}
        files = {"image": (image.name, image.read_bytes())} if image is not None else {}
        body, content_type = _multipart(fields, files)
        return self._results("POST", "/search", {"k": k, **flt}, body=body, content_type=content_type)

    # ------------------------------------------------------------------ transport
    def _results(self, method: str, path: str, query: dict[str, Any], body: bytes | None = None,
                 content_type: str | None = None) -> dict[str, Any]:
        """The server's whole answer (rec_id, variant, results), as a local query prints it."""
        answer = self._call(method, path, query, body, content_type)
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise RemoteError(f"{self.base}{path}: unexpected answer (is this a shoprec server?)")
        return answer

    def _call(self, method: str, path: str, query: dict[str, Any], body: bytes | None,
              content_type: str | None) -> Any:
        url = f"{self.base}{path}?{urlencode(_query(query), doseq=True)}"
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = Request(url, data=body, headers=headers, method=method)
        try:
            with urlopen(request, timeout=self.timeout_s) as response:  # the scheme was checked in __init__
                return json.loads(response.read())
        except HTTPError as err:
            raise RemoteError(f"the server answered {err.code}: {_detail(err)}") from None
        except (URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RemoteError(f"cannot reach the server at {self.base}: {reason}") from None
        except ValueError as err:
            raise RemoteError(f"{url}: the answer is not JSON ({err})") from None


def filter_query(category: Sequence[str] | None, min_price: float | None, max_price: float | None,
                 in_stock: bool | None) -> dict[str, Any]:
    """The CLI's filter options as the HTTP API's query parameters (see http/deps.py)."""
    query: dict[str, Any] = {}
    if category:
        query["category"] = list(category)
    if min_price is not None:
        query["min_price"] = min_price
    if max_price is not None:
        query["max_price"] = max_price
    if in_stock is not None:
        query["in_stock"] = in_stock
    return query


def _query(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _detail(err: HTTPError) -> str:
    """The error body's one-line ``detail`` (every shoprec error has one), else the status text."""
    try:
        detail = json.loads(err.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return " ".join(str(detail).split()) if detail else str(err.reason)


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (the form POST /search reads)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode("utf-8") + b"\r\n")
    for name, (filename, data) in files.items():
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{safe_name}"\r\n'
                     f"Content-Type: {mime}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
