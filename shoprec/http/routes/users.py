"""Per-shopper endpoints: the personalised feed, the history behind it, and forgetting a user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shoprec.http.auth import READ, WRITE
from shoprec.http.deps import Filter, K, Service, UserId
from shoprec.http.schemas import Forgotten, History, HistoryEntry, Results

router = APIRouter(tags=["users"])


@router.get("/users/{user_id}/recommendations", response_model=Results, dependencies=READ)
def recommendations(
    user_id: UserId,
    flt: Filter,
    svc: Service,
    k: K = 10,
    context_item: Annotated[str | None, Query(max_length=256, description="Item being viewed now; "
                                              "steers the feed (and is the cold start seed).")] = None,
    exclude_purchased: Annotated[bool, Query(description="Leave out items the user bought.")] = True,
) -> Results:
    """A user's feed. Users without history get a cold start (like context_item, else trending)."""
    return Results(results=svc.recommend(user_id, k=k, context_item=context_item or None,
                                         exclude_purchased=exclude_purchased, flt=flt))


@router.get("/users/{user_id}/history", response_model=History, dependencies=READ)
def history(
    user_id: UserId,
    svc: Service,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> History:
    """The user's events, newest first, with each item's title and photo (if still in the catalog)."""
    events = svc.history(user_id)[:limit]
    payloads = {item_id: svc.get_item(item_id) for item_id in dict.fromkeys(e.item_id for e in events)}
    return History(user_id=user_id, events=[HistoryEntry.of(e, payloads[e.item_id]) for e in events])


@router.delete("/users/{user_id}", response_model=Forgotten, dependencies=WRITE)
def forget(user_id: UserId, svc: Service) -> Forgotten:
    """Delete everything known about a user; what their events fed is recounted without them."""
    return Forgotten(user_id=user_id, events_removed=int(svc.forget_user(user_id)))
