"""The catalog format (shoprec's public contract) and a reader that never loses good rows.

A row is JSONL object or CSV record with ``id``, ``title`` (required), ``description``,
``category``, ``brand``, ``price``, ``in_stock`` (default true), ``image``, ``attributes``
(CSV: ``attr.NAME`` columns) and ``created_at``. Each bad row becomes a ``RowError`` naming
its line and reason; every other row is yielded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shoprec.bounds import SETTING_OF, InputBounds, bounds_of, check_text, printable
from shoprec.rows import describe, read_rows, readable_id


class Product(BaseModel):
    """One catalog row. String lengths, attribute counts and Unicode validity are checked
    against ``InputBounds`` (settings ``SHOPREC_MAX_*``); a price must be finite."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    in_stock: bool = True
    image: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_number(cls, v: Any) -> Any:
        # A numeric id in JSON is still an id; bool is not.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("id", "title", "description", "category", "brand", "image")
    @classmethod
    def _bounded(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        bounds = bounds_of(info)
        if bounds is None:
            return v
        limit_name = {"id": "id_chars", "title": "title_chars", "description": "description_chars",
                      "image": "image_ref_chars"}.get(info.field_name or "", "label_chars")
        return check_text(v, bounds.chars(info.field_name or ""), SETTING_OF[limit_name])

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_as_strings(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            return v
        bounds = bounds_of(info)
        if bounds is not None and len(v) > bounds.attributes:
            raise ValueError(f"{len(v)} attributes, over the limit of {bounds.attributes} "
                             "(SHOPREC_MAX_ATTRIBUTES raises it)")
        out = {}
        for key, value in v.items():
            name = str(key)
            shown = printable(name, 60)
            if isinstance(value, (dict, list)):
                raise ValueError(f"attribute {shown!r} must be a string, got {type(value).__name__}")
            if bounds is not None:
                try:
                    check_text(name, bounds.attribute_key_chars, "MAX_ATTRIBUTE_KEY_CHARS")
                except ValueError as err:
                    raise ValueError(f"attribute name {shown!r}: {err}") from None
            if value is not None:
                text = str(value)
                if bounds is not None:
                    try:
                        check_text(text, bounds.attribute_value_chars, "MAX_ATTRIBUTE_VALUE_CHARS")
                    except ValueError as err:
                        raise ValueError(f"attribute {shown!r}: {err}") from None
                out[name] = text
        return out

    def text_for_embedding(self) -> str:
        """What the dense text encoders read: the words a shopper would use."""
        parts = [self.title]
        if self.category:
            parts.append(self.category)
        if self.brand:
            parts.append(self.brand)
        colour = self.attributes.get("colour") or self.attributes.get("color") or self.attributes.get("颜色")
        if colour:
            parts.append(colour)
        if self.description:
            parts.append(self.description[:500])
        return ". ".join(parts)

    def text_for_lexical(self) -> str:
        return " ".join(
            p for p in (self.title, self.category, self.brand, self.description,
                        " ".join(self.attributes.values())) if p
        )

    def content_hash(self, image_fingerprint: str = "") -> str:
        """Changes whenever anything that feeds an embedding or the payload changes."""
        blob = self.model_dump_json() + "|" + image_fingerprint
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def payload(self) -> dict[str, Any]:
        """Catalog fields as the store's payload (the store writes ``in_stock`` in its own form)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["item_id"] = data.pop("id")
        return data


@dataclass(frozen=True)
class RowError:
    line: int
    item_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" (item {self.item_id})" if self.item_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass(frozen=True)
class CatalogRow:
    line: int
    product: Product


def parse_row(raw: Any, line: int, bounds: InputBounds | None = None) -> CatalogRow | RowError:
    if not isinstance(raw, dict):
        return RowError(line, None, f"expected an object, got {type(raw).__name__}")
    try:
        return CatalogRow(line, Product.model_validate(raw, context=bounds.context() if bounds else None))
    except ValidationError as err:
        return RowError(line, readable_id(raw, "id"), describe(err, "row"))


def _csv_record_to_raw(record: dict[str, str]) -> dict[str, Any]:
    """A CSV record as a JSON row would say it: ``attr.NAME`` columns as ``attributes``, yes/no stock."""
    raw: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for key, value in record.items():
        if key.startswith("attr."):
            attributes[key[5:]] = value
        elif key == "in_stock":
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "y"):
                raw[key] = True
            elif lowered in ("0", "false", "no", "n"):
                raw[key] = False
            else:
                raw[key] = value
        else:
            raw[key] = value
    if attributes:
        raw["attributes"] = attributes
    return raw


def read_catalog(path: Path, bounds: InputBounds | None = None) -> Iterator[CatalogRow | RowError]:
    """Rows of a JSONL (``.jsonl``/``.json``/``.ndjson``) or CSV/TSV catalog, in file order, each
    checked against ``bounds`` (default: the environment's settings); see shoprec/rows.py."""
    return read_rows(path, lambda raw, line: parse_row(raw, line, bounds),
                     lambda line, reason, item_id: RowError(line, item_id, reason),
                     name="catalog", id_key="id",
                     parse_csv=lambda record, line: parse_row(_csv_record_to_raw(record), line, bounds))
