"""Bounds on every field of the catalog and event formats, and text that is valid Unicode.

Why: an unbounded field is a denial of service (a 1 MB category took 94 s to index and left the
server at 1.6 GB), an absurd quantity rules trending, and a lone surrogate ("\\ud800", legal in
JSON, not in UTF-8) passes validation only to fail later, in SQLite or the JSON encoder, after
other entries of the batch were written. Each check here fails one entry with a message naming
the limit, so callers reject that entry before anything is written.

The limits come from ``Settings`` (``SHOPREC_MAX_*``). Callers that know their settings pass
them as pydantic validation context (``bounds.context()``); without context the environment's
settings apply. Rows read back from our own event log are trusted (``STORED``): they passed the
bounds in force when they were accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationInfo

if TYPE_CHECKING:
    from shoprec.config import Settings

#: Validation context of rows read back from the event log: no bounds re-checked.
STORED: dict[str, Any] = {"stored": True}


@dataclass(frozen=True)
class InputBounds:
    id_chars: int = 256
    title_chars: int = 2000
    description_chars: int = 20000
    label_chars: int = 256
    image_ref_chars: int = 2048
    attributes: int = 64
    attribute_key_chars: int = 128
    attribute_value_chars: int = 1000
    max_quantity: int = 10_000

    @classmethod
    def of(cls, settings: Settings) -> InputBounds:
        return cls(id_chars=settings.max_id_chars, title_chars=settings.max_title_chars,
                   description_chars=settings.max_description_chars, label_chars=settings.max_label_chars,
                   image_ref_chars=settings.max_image_ref_chars, attributes=settings.max_attributes,
                   attribute_key_chars=settings.max_attribute_key_chars,
                   attribute_value_chars=settings.max_attribute_value_chars,
                   max_quantity=settings.max_quantity)

    def context(self) -> dict[str, Any]:
        return {"bounds": self}

    def chars(self, field: str) -> int:
        """The length limit of a string field of Product or Event."""
        if field in ("id", "item_id", "user_id", "session_id", "event_id"):
            return self.id_chars
        if field == "title":
            return self.title_chars
        if field == "description":
            return self.description_chars
        if field in ("category", "brand"):
            return self.label_chars
        if field == "image":
            return self.image_ref_chars
        raise KeyError(field)


#: Setting (env var suffix) behind each limit, named in messages so a shop knows what to raise.
SETTING_OF = {"id_chars": "MAX_ID_CHARS", "title_chars": "MAX_TITLE_CHARS",
              "description_chars": "MAX_DESCRIPTION_CHARS", "label_chars": "MAX_LABEL_CHARS",
              "image_ref_chars": "MAX_IMAGE_REF_CHARS"}


def bounds_of(info: ValidationInfo) -> InputBounds | None:
    """The bounds this validation runs under; None for trusted rows of our own log."""
    context = info.context or {}
    if context.get("stored"):
        return None
    found = context.get("bounds")
    if isinstance(found, InputBounds):
        return found
    from shoprec.config import get_settings

    return InputBounds.of(get_settings())


def surrogate_at(text: str) -> int | None:
    """Position of the first lone surrogate (not encodable as UTF-8), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def check_text(text: str, limit: int | None, setting: str | None = None) -> str:
    """``text`` if it is valid Unicode within ``limit`` characters, else ValueError saying why."""
    at = surrogate_at(text)
    if at is not None:
        raise ValueError(f"contains a lone surrogate (\\u{ord(text[at]):04x}) at character {at}: "
                         "not valid Unicode text")
    if limit is not None and len(text) > limit:
        hint = f" (SHOPREC_{setting} raises it)" if setting else ""
        raise ValueError(f"{len(text)} characters, over the limit of {limit}{hint}")
    return text


def printable(text: str, limit: int = 300) -> str:
    """``text`` safe to echo in a report: lone surrogates escaped, cut to ``limit`` characters."""
    if surrogate_at(text) is not None:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"

