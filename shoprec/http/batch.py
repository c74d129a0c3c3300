"""Validating a posted JSON array entry by entry, so one bad entry never sinks the batch.

Errors carry the entry's 0-based position in the array and the field pydantic objected to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from shoprec.http.errors import ApiError
from shoprec.http.schemas import BatchError
from shoprec.rows import field_errors

M = TypeVar("M", bound=BaseModel)


@dataclass
class Validated(Generic[M]):
    """Entries that validated, with their positions in the posted array, and those that did not."""

    models: list[M] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    errors: list[BatchError] = field(default_factory=list)

    def position_of(self, number: int) -> int:
        """Posted position of the ``number``-th (1-based) valid entry, as services number rows."""
        return self.positions[number - 1]


def _printable(text: str) -> str:
    """Text safe to send back in a report: a lone surrogate (valid in JSON, not UTF-8) is escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _readable_id(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return _printable(str(value))[:256]


def validate_entries(model: type[M], raws: list[Any], id_key: str, max_entries: int,
                     context: dict[str, Any] | None = None) -> Validated[M]:
    """Every entry checked on its own (``context``: the shop's ``InputBounds``), before anything
    is written, so a write only ever sees entries that can be stored and reported."""
    if len(raws) > max_entries:
        raise ApiError(413, f"{len(raws)} entries in one request, over the limit of {max_entries}; "
                            "send smaller batches", field="body", location="body")
    out: Validated[M] = Validated()
    for index, raw in enumerate(raws):
        ident = _readable_id(raw, id_key)
        if not isinstance(raw, dict):
            out.errors.append(BatchError(index=index, id=None, field=None,
                                         message=f"expected an object, got {type(raw).__name__}"))
            continue
        try:
            out.models.append(model.model_validate(raw, context=context))
            out.positions.append(index)
        except ValidationError as err:
            for name, message in field_errors(err):
                out.errors.append(BatchError(index=index, id=ident, field=name, message=message))
    return out
