"""Errors that callers catch, kept apart from the machinery that raises them, so catching one
(the CLI's `similar` does) never imports the recommenders."""

from __future__ import annotations


class UnknownItem(LookupError):
    """An item id the store does not hold."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


class RemoteError(Exception):
    """The server a CLI query was sent to (``--url``) could not be reached, or answered with an
    error; the message is one line (the server's ``detail``)."""
