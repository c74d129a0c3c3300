"""Per-shopper endpoints: the personalised feed, the history behind it, and forgetting a user.

Reads here are ``PERSONAL``: a purchase history or a feed built from it needs a key whenever any
key is configured (see auth.py), even where the catalog itself is public.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse

from shoprec.bounds import InputBounds
from shoprec.http.auth import PERSONAL, WRITE
from shoprec.http.contract import JSON_BODY_ERRORS, batch_body, errors
from shoprec.http.deps import Filter, HttpSettings, K, Service, UserId
from shoprec.http.schemas import BatchError, Forgotten, History, HistoryEntry, Results, UsersReport
from shoprec.recommend.segments import UserError, parse_user

router = APIRouter(tags=["users"])


@router.get("/users/{user_id}/recommendations", response_model=Results, dependencies=PERSONAL,
            responses=errors(404, 422))
def recommendations(
    user_id: UserId,
    flt: Filter,
    svc: Service,
    k: K = 10,
    context_item: Annotated[str | None, Query(max_length=256, description="Item being viewed now; "
                                              "steers the feed (and is the cold start seed).")] = None,
    exclude_purchased: Annotated[bool, Query(description="Never offer items the user bought (by default the "
                                                         "ranker decides whether buying again fits).")] = False,
) -> Response:
    """A user's feed. Users without history get a cold start (like context_item, else what their
    segment buys, else trending)."""
    return Results.response(svc.serve("feed", user_id, lambda o: svc.recommend(
        user_id, k=k, context_item=context_item or None, exclude_purchased=exclude_purchased, flt=flt,
        overrides=o)))


@router.get("/users/{user_id}/history", response_model=History, dependencies=PERSONAL, responses=errors(422))
def history(
    user_id: UserId,
    svc: Service,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> History:
    """The user's events, newest first, with each item's title and photo (if still in the catalog)."""
    events = svc.history(user_id)[:limit]
    payloads = {item_id: svc.get_item(item_id) for item_id in dict.fromkeys(e.item_id for e in events)}
    return History(user_id=user_id, events=[HistoryEntry.of(e, payloads[e.item_id]) for e in events])


@router.delete("/users/{user_id}", response_model=Forgotten, dependencies=WRITE, responses=errors(422, 507))
def forget(user_id: UserId, svc: Service) -> Forgotten:
    """Delete everything known about a user; what their events fed is recounted without them."""
    return Forgotten(user_id=user_id, events_removed=int(svc.forget_user(user_id)))


@router.post("/users", response_model=UsersReport, dependencies=WRITE,
             responses=errors(*JSON_BODY_ERRORS, 507, report=UsersReport),
             openapi_extra=batch_body("UserEntry", "Users: user_id plus attributes (age, gender, region, ...). "
                                      "A 422 with the report when no user was stored."))
def add_users(
    users: Annotated[list[Any], Body(description="Users: user_id plus attributes (age, gender, region, ...).",
                                     examples=[[{"user_id": "u001", "age": 34, "region": "north"}]])],
    svc: Service,
    settings: HttpSettings,
) -> Any:
    """Registration attributes: a new user's first feed is what their segment buys. Each rejected
    entry is reported with its 0-based position; the others are stored."""
    if len(users) > settings.max_batch_items:
        body = UsersReport(stored=0, errors=[BatchError(index=settings.max_batch_items, message=(
            f"at most {settings.max_batch_items} users per request, got {len(users)}"))])
        return JSONResponse(body.model_dump(), status_code=422)
    bounds = InputBounds.of(svc.settings)  # the service's limits, as the file reader uses them
    rows = [parse_user(raw, i, bounds) for i, raw in enumerate(users)]
    stored, errors = svc.engine.add_users(rows)
    body = UsersReport(stored=stored, errors=[
        BatchError(index=e.line, id=None, field=e.reason.split(":")[0] if ":" in e.reason else None,
                   message=e.reason) for e in errors if isinstance(e, UserError)])
    if stored == 0 and errors:
        return JSONResponse(body.model_dump(), status_code=422)
    return body
