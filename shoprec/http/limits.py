"""Request bodies over ``max_body_bytes`` get a 413 before they can fill memory or disk.

A pure ASGI middleware (FastAPI's own ``max_body_size`` only exists in recent releases):
a declared ``Content-Length`` over the limit is refused before a byte is read, and a body
without one (chunked) is counted while it streams and cut off at the limit.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoprec.http.errors import error_body


def _too_large(limit: int) -> HTTPException:
    # An HTTPException is what FastAPI re-raises untouched from body parsing (anything else
    # becomes a 400), so the app's handler renders it as a 413.
    return HTTPException(413, f"request body is over the {limit} byte limit")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            # Reached only when a route read the body outside FastAPI's parsing (e.g. a plain
            # Starlette endpoint); FastAPI routes already turned it into a response.
            if exc.status_code != 413 or started:
                raise
            await _send_413(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps(error_body(f"request body is over the {limit} byte limit")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
