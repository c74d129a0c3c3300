"""POST /events: behaviour in, folded into the feed's state, popularity and co-purchases at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from shoprec.http.auth import WRITE
from shoprec.http.batch import validate_entries
from shoprec.http.contract import JSON_BODY_ERRORS, batch_body, errors
from shoprec.http.deps import HttpSettings, Metrics, Service
from shoprec.http.schemas import BatchError, EventsReport
from shoprec.recommend.events import Event

router = APIRouter(tags=["events"])

_EXAMPLE = [{"user_id": "u001", "item_id": "tshirt-black", "type": "purchase", "ts": "2026-03-01T10:00:00Z",
             "session_id": "u001-s9"}]


def _field_of(reason: str) -> str | None:
    """Which field an engine-side rejection is about (its reasons are sentences, not fields)."""
    if "unknown item" in reason:
        return "item_id"
    if "timestamp" in reason:
        return "ts"
    return None


@router.post("/events", response_model=EventsReport, dependencies=WRITE,
             responses=errors(*JSON_BODY_ERRORS, 507, report=EventsReport),
             openapi_extra=batch_body("Event", "Events in the event format. A 422 with the report when no "
                                      "event was accepted."))
def ingest_events(
    events: Annotated[list[Any], Body(description="Events in the event format (user_id, item_id, type, ts, "
                                                  "session_id?, price?, quantity?).", examples=[_EXAMPLE])],
    svc: Service,
    stats: Metrics,
    settings: HttpSettings,
) -> Any:
    """Ingest a batch; each rejected event is reported with its 0-based position and reason."""
    batch = validate_entries(Event, events, "item_id", settings.max_batch_items)
    ingested = 0
    errors = list(batch.errors)
    if batch.models:
        report = svc.ingest_events(batch.models)
        ingested = report.ingested
        errors += [BatchError(index=batch.position_of(e.line), id=e.item_id, field=_field_of(e.reason),
                              message=e.reason) for e in report.errors]
    stats.events_ingested.inc(ingested)
    stats.events_rejected.inc(len({e.index for e in errors}))
    body = EventsReport(ingested=ingested, errors=sorted(errors, key=lambda e: e.index))
    if ingested == 0 and errors:
        return JSONResponse(body.model_dump(), status_code=422)
    return body
