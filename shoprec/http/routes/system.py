"""Operations and the storefront: health, metrics, product photos and the web page."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from shoprec.http.auth import READ
from shoprec.http.contract import errors
from shoprec.http.deps import ItemId, Metrics, Service
from shoprec.http.errors import ApiError
from shoprec.http.schemas import Health
from shoprec.images import is_remote
from shoprec.storage import StoreError

router = APIRouter(tags=["system"])

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(svc: Service) -> Response | Health:
    """Liveness and readiness: 200 with the item count once the store and the events database
    answer, else 503 (/health is open: the database's address is never in the detail)."""
    try:
        items = svc.count()
    except Exception as err:  # noqa: BLE001 - any store failure means "not ready", never a 500
        return JSONResponse(Health(status="unavailable", detail=str(err)).model_dump(), status_code=503)
    try:
        svc.engine.events.clock()  # a read of its own: following other workers alone never fails
        ranking = svc.engine.ranking_status()
    except StoreError:
        # its message names the server (password redacted); the server log has it (RecommendEngine.refresh)
        return JSONResponse(Health(status="unavailable", detail="the events database does not answer "
                                   "(the server log says why)").model_dump(), status_code=503)
    return Health(status="ok", items=items, space=ranking["space"], space_reason=ranking["space_reason"],
                  ranker=ranking["ranker"], ranker_reason=ranking["why"], database=svc.engine.events.db.dialect,
                  warm=svc.engine.warm)


@router.get("/metrics", dependencies=READ, response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."}})
def metrics_text(stats: Metrics) -> Response:
    """Prometheus text format: requests and latency per route, index size, events ingested."""
    body, content_type = stats.render()
    return Response(body, media_type=content_type)


# ``:path`` because the server decodes %2F before routing: an id holding "/" (sent encoded, as
# image_url writes it) arrives as several path segments and must still reach this route.
@router.get("/images/{item_id:path}", dependencies=READ, response_class=FileResponse,
            responses={200: {"content": {"image/*": {}}}, 307: {"description": "Remote photo."},
                       **errors(404, 422)})
def image(item_id: ItemId, svc: Service) -> Response:
    """The product photo: the local file, or a redirect to a remote photo URL.

    The id is percent-decoded, so ``/images/a%3Fb%23c`` is the photo of item ``a?b#c``.
    """
    payload = svc.get_item(item_id)
    if payload is None:
        raise ApiError(404, f"unknown item {item_id!r}", field="item_id", location="path")
    ref = payload.get("image")
    if isinstance(ref, str) and is_remote(ref):
        return RedirectResponse(ref, status_code=307)
    path = svc.image_path(item_id)
    media_type = mimetypes.guess_type(path.name)[0] if path else None
    # Only files that look like images are served: the payload path is data, not a licence to
    # hand out whatever file it names.
    if path is None or not media_type or not media_type.startswith("image/"):
        raise ApiError(404, f"item {item_id!r} has no photo", field="item_id", location="path")
    return FileResponse(path, media_type=media_type,
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


#: The page runs only its own script and style; photos may come from remote catalog URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: http: data: blob:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/", include_in_schema=False)
def index_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)
