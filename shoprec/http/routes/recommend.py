"""Catalog recommendations: similar products, what goes with an item or a cart, and trending.

None of these is about a shopper, so they are as open as the catalog (``READ``); the feed for a
user is in users.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from shoprec.http.auth import READ
from shoprec.http.contract import JSON_BODY_ERRORS, errors
from shoprec.http.deps import Filter, ItemId, K, Service, Shopper
from shoprec.http.errors import ApiError
from shoprec.http.schemas import CartRequest, Results

router = APIRouter(tags=["recommend"])

Modality = Literal["joint", "text", "image", "colour"]


@router.get("/items/{item_id}/similar", response_model=Results, dependencies=READ, responses=errors(404, 422))
def similar(
    item_id: ItemId,
    flt: Filter,
    svc: Service,
    k: K = 10,
    modality: Annotated[Modality, Query(description="Which vector to compare: joint (text+photo), "
                                                    "text, image (the photo alone: its look vector, CNN features and colour, where the store has one, "
                                                    "else its CNN vector; colour mixed in) or colour (the photo's colours alone).")] = "joint",
    mmr: Annotated[float | None, Query(ge=0, le=1, description="Diversity 0..1 (MMR); default from settings.")] = None,
    user_id: Shopper = None,
) -> Response:
    """Products most like this one."""
    try:
        served = svc.serve("similar", user_id, lambda o: svc.similar(
            item_id, k=k, modality=modality, flt=flt, mmr=mmr, overrides=o))
    except ValueError as err:
        # k, modality and mmr are validated above; what is left is an item without this vector
        # (modality=image for an item indexed without a photo): a valid question about something
        # that is not there, so 404 like /images for that item, not 422.
        raise ApiError(404, str(err), field="modality", location="query") from err
    return Results.response(served)


@router.get("/items/{item_id}/complementary", response_model=Results, dependencies=READ,
            responses=errors(404, 422))
def complementary(
    item_id: ItemId,
    flt: Filter,
    svc: Service,
    k: K = 10,
    user_id: Shopper = None,
) -> Response:
    """What goes with this item: bought together, then complementary categories by content."""
    return Results.response(svc.serve("complementary", user_id, lambda o: svc.complementary(
        [item_id], k=k, flt=flt)))


@router.post("/cart/complementary", response_model=Results, dependencies=READ,
             responses=errors(404, *JSON_BODY_ERRORS))
def cart_complementary(
    cart: CartRequest,
    flt: Filter,
    svc: Service,
    k: K = 10,
    user_id: Shopper = None,
) -> Response:
    """What completes a cart (never the cart's items themselves)."""
    return Results.response(svc.serve("cart", user_id, lambda o: svc.complementary(
        cart.item_ids, k=k, flt=flt)))


@router.get("/trending", response_model=Results, dependencies=READ, responses=errors(422))
def trending(
    flt: Filter,
    svc: Service,
    k: K = 10,
    user_id: Shopper = None,
) -> Response:
    """What an anonymous visitor sees: the most popular items now, then new arrivals.

    Nothing personal, so it is as open as the catalog (a storefront can show it without a key).
    """
    return Results.response(svc.serve("trending", user_id, lambda o: svc.trending(k=k, flt=flt)))
