"""Item-to-item recommendations: similar products and what goes with an item or a cart."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from shoprec.http.auth import READ
from shoprec.http.deps import Filter, ItemId, K, Service
from shoprec.http.errors import ApiError
from shoprec.http.schemas import CartRequest, Results

router = APIRouter(tags=["recommend"])

Modality = Literal["joint", "text", "image"]


@router.get("/items/{item_id}/similar", response_model=Results, dependencies=READ)
def similar(
    item_id: ItemId,
    flt: Filter,
    svc: Service,
    k: K = 10,
    modality: Annotated[Modality, Query(description="Which vector to compare: joint (text+photo), "
                                                    "text, or image (the photo alone).")] = "joint",
    mmr: Annotated[float | None, Query(ge=0, le=1, description="Diversity 0..1 (MMR); default from settings.")] = None,
) -> Results:
    """Products most like this one."""
    try:
        return Results(results=svc.similar(item_id, k=k, modality=modality, flt=flt, mmr=mmr))
    except ValueError as err:
        # k, modality and mmr are validated above; what is left is an item without this vector
        # (e.g. modality=image for an item indexed without a photo).
        raise ApiError(422, str(err), field="modality", location="query") from err


@router.get("/items/{item_id}/complementary", response_model=Results, dependencies=READ)
def complementary(
    item_id: ItemId,
    flt: Filter,
    svc: Service,
    k: K = 10,
) -> Results:
    """What goes with this item: bought together, then complementary categories by content."""
    return Results(results=svc.complementary([item_id], k=k, flt=flt))


@router.post("/cart/complementary", response_model=Results, dependencies=READ)
def cart_complementary(
    cart: CartRequest,
    flt: Filter,
    svc: Service,
    k: K = 10,
) -> Results:
    """What completes a cart (never the cart's items themselves)."""
    return Results(results=svc.complementary(cart.item_ids, k=k, flt=flt))
