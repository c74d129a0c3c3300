"""Online measurement: A/B experiments and the shop's online measures (GET /stats).

/stats and the experiments are aggregates over all shoppers, never one shopper's data, so they
are as open as the catalog (``READ``); starting and stopping experiments changes what everyone
is served, so those are writes (``WRITE``, with ``Idempotency-Key`` support like POST /events).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from shoprec.http.auth import READ, WRITE
from shoprec.http.contract import JSON_BODY_ERRORS, errors
from shoprec.http.deps import HttpSettings, Service
from shoprec.http.errors import ApiError
from shoprec.http.idempotency import Idempotency, IdempotencyKey, json_response, request_sha256
from shoprec.online.experiments import ExperimentError, ExperimentSpec, Name

router = APIRouter(tags=["online"])


class ExperimentOut(ExperimentSpec):
    state: str = Field(description="running or stopped.")
    started_at: float
    stopped_at: float | None = None
    winner: str | None = Field(None, description="The variant promoted when it stopped (serves everyone since).")


class Experiments(BaseModel):
    running: str | None
    experiments: list[ExperimentOut]


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promote: Name | None = Field(None, description="Variant whose settings then serve everyone.")


class Stats(BaseModel):
    """Online measures; see shoprec/online/stats.py for every definition."""

    model_config = ConfigDict(extra="allow")

    experiment: dict[str, Any] | None
    since: str | None
    catalogue_items: int
    method: str
    groups: list[dict[str, Any]] = Field(description="Totals per surface x variant ('all': every surface), "
                                                     "with 95% intervals.")
    daily: list[dict[str, Any]] = Field(description="The same per UTC day of first showing.")
    tests: list[dict[str, Any]] = Field(description="Each variant against the control, per surface and rate.")
    verdict: dict[str, Any]


def _raise(err: ExperimentError) -> ApiError:
    return ApiError(err.status, str(err), field=err.field, location="path" if err.field == "name" else "body")


def _idempotent(svc: Any, settings: Any, scope: str, key: str | None, payload: Any, work: Any) -> Any:
    if key is None:
        return json_response(*work())
    keys = Idempotency(settings)
    with svc.engine.write_transaction() as conn:
        replay = keys.replay(conn, scope, key, request_sha256(payload))
        if replay is not None:
            return replay
        status, body = work()
        keys.save(conn, scope, key, request_sha256(payload), status, body)
    return json_response(status, body)


@router.get("/experiments", response_model=Experiments, dependencies=READ, responses=errors(422))
def list_experiments(svc: Service) -> Experiments:
    """Every experiment, oldest first, and which one runs."""
    online = svc.engine.online
    running = online.experiments.running
    return Experiments(running=running.name if running else None,
                       experiments=[ExperimentOut(**e.as_dict()) for e in online.experiments.all()])


@router.post("/experiments", response_model=ExperimentOut, status_code=201, dependencies=WRITE,
             responses=errors(409, *JSON_BODY_ERRORS, 507))
def start_experiment(
    spec: Annotated[ExperimentSpec, Body(examples=[{"name": "ranker-2026-03", "metric": "ctr", "variants": [
        {"name": "control", "share": 1}, {"name": "blend", "share": 1, "overrides": {"ranker": "blend"}}]}])],
    svc: Service,
    settings: HttpSettings,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Start an A/B experiment (at most one runs): users are split by a stable hash of user id and salt."""
    def work() -> tuple[int, dict[str, Any]]:
        try:
            started = svc.engine.online.experiments.start(spec)
        except ExperimentError as err:
            raise ApiError(err.status, str(err), field="name", location="body") from None
        return 201, ExperimentOut(**started.as_dict()).model_dump(mode="json")

    return _idempotent(svc, settings, "POST /experiments", idempotency_key, spec.model_dump(mode="json"), work)


@router.post("/experiments/{name}/stop", response_model=ExperimentOut, dependencies=WRITE,
             responses=errors(404, 409, *JSON_BODY_ERRORS, 507))
def stop_experiment(
    name: Annotated[str, Path(min_length=1, max_length=64, description="The experiment's name.")],
    svc: Service,
    settings: HttpSettings,
    body: StopRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Stop the experiment; ``promote`` makes a variant's settings serve everyone from now on."""
    promote = body.promote if body else None

    def work() -> tuple[int, dict[str, Any]]:
        try:
            stopped = svc.engine.online.experiments.stop(name, promote)
        except ExperimentError as err:
            raise _raise(err) from None
        return 200, ExperimentOut(**stopped.as_dict()).model_dump(mode="json")

    return _idempotent(svc, settings, f"POST /experiments/{name}/stop", idempotency_key,
                       body.model_dump() if body else None, work)


@router.get("/stats", response_model=Stats, dependencies=READ, responses=errors(404, 422))
def stats(
    svc: Service,
    experiment: Annotated[str | None, Query(min_length=1, max_length=64, description=(
        "Which experiment [default: the running one, else the latest; answers outside any when there is none]."))]
    = None,
    since: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description=(
        "Only lists first shown on or after this UTC day (YYYY-MM-DD)."))] = None,
) -> Any:
    """Impressions, CTR, add-to-cart and conversion rates, credited revenue, items per order and
    catalogue coverage per surface x variant (x day), with 95% intervals, a two-proportion z-test of
    each variant against the control and the verdict."""
    # Days compare as YYYY-MM-DD strings, so a well-formed but impossible day (2026-02-30) still
    # says where to start; only the shape is validated.
    try:
        return json_response(200, svc.online_stats(experiment, since))
    except ExperimentError as err:
        raise ApiError(404, str(err), field="experiment", location="query") from None
