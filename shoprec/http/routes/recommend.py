"""Item-to-item recommendations: similar products and what goes with an item or a cart."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from shoprec.http.auth import READ
from shoprec.http.deps import K, item_filter, service
from shoprec.http.errors import ApiError
from shoprec.http.routes.catalog import ItemId
from shoprec.http.schemas import CartRequest, Results
from shoprec.indexing.store import ItemFilter
from shoprec.service import Shoprec

router = APIRouter(tags=["recommend"])

Modality = Literal["joint", "text", "image"]


@router.get("/items/{item_id}/similar", response_model=Results, dependencies=READ)
def similar(
    item_id: ItemId,
    k: K = 10,
    modality: Annotated[Modality, Query(description="Which vector to compare: joint (text+photo), "
                                                    "text, or image (the photo alone).")] = "joint",
    mmr: Annotated[float | None, Query(ge=0, le=1, description="Diversity 0..1 (MMR); default from settings.")] = None,
    flt: ItemFilter | None = Depends(item_filter),
    svc: Shoprec = Depends(service),
) -> Results:
    """Products most like this one."""
    try:
        return Results(results=svc.similar(item_id, k=k, modality=modality, flt=flt, mmr=mmr))
    except ValueError as err:
        # k, modality and mmr are validated above; what is left is an item without this vector
        # (e.g. modality=image for an item indexed without a photo).
        raise ApiError(422, str(err), field="modality", location="query") from err


@router.get("/items/{item_id}/complementary", response_model=Results, dependencies=READ)
def complementary(item_id: ItemId, k: K = 10, flt: ItemFilter | None = Depends(item_filter),
                  svc: Shoprec = Depends(service)) -> Results:
    """What goes with this item: bought together, then complementary categories by content."""
    return Results(results=svc.complementary([item_id], k=k, flt=flt))


@router.post("/cart/complementary", response_model=Results, dependencies=READ)
def cart_complementary(cart: CartRequest, k: K = 10, flt: ItemFilter | None = Depends(item_filter),
                       svc: Shoprec = Depends(service)) -> Results:
    """What completes a cart (never the cart's items themselves)."""
    return Results(results=svc.complementary(cart.item_ids, k=k, flt=flt))
