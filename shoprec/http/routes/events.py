"""POST /events: behaviour in, folded into the feed's state, popularity and co-purchases at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from shoprec.bounds import InputBounds
from shoprec.http.auth import WRITE
from shoprec.http.batch import validate_entries
from shoprec.http.contract import JSON_BODY_ERRORS, batch_body, errors
from shoprec.http.deps import HttpSettings, Metrics, Service
from shoprec.http.idempotency import Idempotency, IdempotencyKey, json_response, request_sha256
from shoprec.http.schemas import BatchError, EventsReport
from shoprec.recommend.events import Event

router = APIRouter(tags=["events"])

_SCOPE = "POST /events"
_EXAMPLE = [{"user_id": "u001", "item_id": "tshirt-black", "type": "purchase", "ts": "2026-03-01T10:00:00Z",
             "session_id": "u001-s9", "event_id": "order-1001-line-1"}]


@router.post("/events", response_model=EventsReport, dependencies=WRITE,
             responses=errors(*JSON_BODY_ERRORS, 507, report=EventsReport),
             openapi_extra=batch_body("Event", "Events in the event format. A 422 with the report when no "
                                      "event was accepted."))
def ingest_events(
    events: Annotated[list[Any], Body(description="Events in the event format (user_id, item_id, type, ts, "
                                                  "session_id?, price?, quantity?, event_id?, rec_id?).",
                                      examples=[_EXAMPLE])],
    svc: Service,
    stats: Metrics,
    settings: HttpSettings,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Ingest a batch; each rejected event is reported with its 0-based position and reason.

    Every entry is validated before anything is written. An event whose ``event_id`` was
    ingested before is skipped and counted in ``duplicates``. With an ``Idempotency-Key``, the
    events and the answer are committed together and a retry gets the same answer.
    """
    bounds = InputBounds.of(settings)

    def work() -> tuple[int, dict[str, Any]]:
        batch = validate_entries(Event, events, "item_id", settings.max_batch_items, bounds.context())
        ingested = duplicates = attributed = 0
        errors = list(batch.errors)
        if batch.models:
            report = svc.ingest_events(batch.models)
            ingested, duplicates, attributed = report.ingested, report.duplicates, report.attributed
            errors += [BatchError(index=batch.position_of(e.line), id=e.item_id, field=e.field,
                                  message=e.reason) for e in report.errors]
        stats.events_ingested.inc(ingested)
        stats.events_rejected.inc(len({e.index for e in errors}))
        body = EventsReport(ingested=ingested, duplicates=duplicates, attributed=attributed,
                            errors=sorted(errors, key=lambda e: e.index))
        status = 422 if ingested == 0 and duplicates == 0 and errors else 200
        return status, body.model_dump(mode="json")

    if idempotency_key is None:
        return json_response(*work())
    keys = Idempotency(settings)
    digest = request_sha256(events)
    with svc.engine.write_transaction() as conn:
        replay = keys.replay(conn, _SCOPE, idempotency_key, digest)
        if replay is not None:
            return replay
        status, body = work()
        keys.save(conn, _SCOPE, idempotency_key, digest, status, body)
    return json_response(status, body)
