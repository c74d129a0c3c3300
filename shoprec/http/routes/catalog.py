"""Catalog writes and reads: POST /items (batch upsert), GET and DELETE /items/{id}."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body

from shoprec.bounds import InputBounds
from shoprec.catalog import Product
from shoprec.config import Settings
from shoprec.http.auth import READ, WRITE
from shoprec.http.batch import Validated, validate_entries
from shoprec.http.contract import JSON_BODY_ERRORS, batch_body, errors
from shoprec.http.deps import HttpSettings, ItemId, Metrics, Service
from shoprec.http.errors import ApiError
from shoprec.http.idempotency import Idempotency, IdempotencyKey, json_response, key_lock, request_sha256
from shoprec.http.schemas import BatchError, Deleted, ItemsReport, public_item
from shoprec.images import ImageError, is_remote, resolve_local

router = APIRouter(tags=["catalog"])

_SCOPE = "POST /items"

_EXAMPLE = [{
    "id": "tshirt-navy", "title": "藏青色纯棉T恤", "description": "夏季纯棉面料", "category": "T恤",
    "brand": "shoprec demo", "price": 59.0, "in_stock": True, "image": "tshirt-navy.png",
    "attributes": {"colour": "navy"},
}]


def image_root(settings: Settings) -> Path:
    return Path(settings.image_root) if settings.image_root else Path(settings.store) / "images"


def _image_problem(ref: str, root: Path) -> str | None:
    """Why an image reference may not be used over HTTP, or None if it may.

    A local path must be relative to ``image_root`` and stay inside it: an absolute path would
    let any key holder make the server read (and /images serve) an arbitrary file.
    """
    if is_remote(ref):
        return None
    if Path(ref).is_absolute():
        return "absolute image paths are refused over HTTP; give a path relative to image_root or an http(s) URL"
    try:
        resolve_local(ref, root)
    except ImageError as err:
        return str(err)
    return None


def _refuse_bad_images(batch: Validated[Product], root: Path) -> Validated[Product]:
    kept: Validated[Product] = Validated(errors=list(batch.errors))
    for product, position in zip(batch.models, batch.positions, strict=True):
        problem = _image_problem(product.image, root) if product.image else None
        if problem:
            kept.errors.append(BatchError(index=position, id=product.id, field="image", message=problem))
        else:
            kept.models.append(product)
            kept.positions.append(position)
    return kept


def _drop_duplicates(batch: Validated[Product]) -> Validated[Product]:
    first: dict[str, int] = {}
    kept: Validated[Product] = Validated(errors=list(batch.errors))
    for product, position in zip(batch.models, batch.positions, strict=True):
        if product.id in first:
            kept.errors.append(BatchError(index=position, id=product.id, field="id",
                                          message=f"duplicate id, first at index {first[product.id]}"))
            continue
        first[product.id] = position
        kept.models.append(product)
        kept.positions.append(position)
    return kept


@router.post("/items", response_model=ItemsReport, dependencies=WRITE,
             responses=errors(*JSON_BODY_ERRORS, 507, report=ItemsReport),
             openapi_extra=batch_body("Product", "Products in the catalog format (see docs/http.md). "
                                      "A 422 with the report when no entry was valid."))
def upsert_items(
    items: Annotated[list[Any], Body(description="Products in the catalog format (see docs/http.md).",
                                     examples=[_EXAMPLE])],
    svc: Service,
    stats: Metrics,
    settings: HttpSettings,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Index a batch now: new and changed items are recommendable when this returns.

    Each entry is validated on its own, before anything is written; rejected ones are reported
    with their position and field while the valid ones are indexed. Relative image paths
    resolve against image_root. With an ``Idempotency-Key`` a retry gets the first answer.
    """
    root = image_root(settings)

    def work() -> tuple[int, dict[str, Any]]:
        batch = validate_entries(Product, items, "id", settings.max_batch_items,
                                 InputBounds.of(settings).context())
        batch = _refuse_bad_images(_drop_duplicates(batch), root)
        indexed = unchanged = 0
        image_errors: list[BatchError] = []
        if batch.models:
            report = svc.upsert_items(batch.models, root)
            indexed, unchanged = report.indexed, report.unchanged
            image_errors = [BatchError(index=batch.position_of(e.line), id=e.item_id, field="image",
                                       message=e.reason) for e in report.image_errors]
            stats.items_upserted.inc(indexed)
        body = ItemsReport(indexed=indexed, unchanged=unchanged,
                           rejected=sorted(batch.errors, key=lambda e: e.index), image_errors=image_errors)
        return (422 if not batch.models and batch.errors else 200), body.model_dump(mode="json")

    if idempotency_key is None:
        return json_response(*work())
    keys = Idempotency(settings)
    digest = request_sha256(items)
    events = svc.engine.events
    # Indexing writes the vector store, not SQLite: hold this key (not the events file) meanwhile.
    with key_lock(_SCOPE, idempotency_key):
        with events.transaction() as conn:
            replay = keys.replay(conn, _SCOPE, idempotency_key, digest)
        if replay is not None:
            return replay
        status, body = work()
        with events.transaction() as conn:
            keys.save(conn, _SCOPE, idempotency_key, digest, status, body)
    return json_response(status, body)


@router.get("/items/{item_id}", dependencies=READ, responses=errors(404, 422))
def get_item(item_id: ItemId, svc: Service) -> dict[str, Any]:
    """The item as stored, in the catalog format, plus its image_url."""
    payload = svc.get_item(item_id)
    if payload is None:
        raise ApiError(404, f"unknown item {item_id!r}", field="item_id", location="path")
    return public_item(item_id, payload)


@router.delete("/items/{item_id}", response_model=Deleted, dependencies=WRITE, responses=errors(404, 422, 507))
def delete_item(item_id: ItemId, svc: Service) -> Deleted:
    """Remove an item from the index (its past events stay in the behaviour log)."""
    if svc.delete_items([item_id]) == 0:
        raise ApiError(404, f"unknown item {item_id!r}", field="item_id", location="path")
    return Deleted(id=item_id, deleted=True)
