"""POST /search: a text query, a photo, or both, as a multipart (or urlencoded) form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from shoprec.http.auth import READ
from shoprec.http.contract import errors
from shoprec.http.deps import Filter, HttpSettings, K, Service, Shopper
from shoprec.http.errors import ApiError
from shoprec.http.schemas import Results
from shoprec.images import ImageError

router = APIRouter(tags=["search"])


def _read_upload(upload: UploadFile | None, limit: int) -> bytes | None:
    """The photo's bytes, at most ``limit`` (413 beyond); None for an empty file field."""
    if upload is None:
        return None
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"image upload is over the {limit} byte limit", field="image", location="body")
    if not data and not upload.filename:
        return None  # a browser form with no file chosen sends an empty, nameless part
    if not data:
        raise ApiError(422, "image file is empty", field="image", location="body")
    return data


#: What the signature cannot say: a text with something in it, or a photo, is required (either
#: alone is a search), and the photo is a file part.
_FORM_CONTRACT = {"requestBody": {"content": {"multipart/form-data": {
    "schema": {"anyOf": [{"required": ["q"], "properties": {"q": {"pattern": r"\S"}}}, {"required": ["image"]}]},
    "encoding": {"image": {"contentType": "image/png, image/jpeg, image/webp, image/gif, image/bmp"}},
}}}}


@router.post("/search", response_model=Results, dependencies=READ, responses=errors(400, 413, 422),
             openapi_extra=_FORM_CONTRACT)
def search(
    flt: Filter,
    svc: Service,
    settings: HttpSettings,
    q: Annotated[str | None, Form(max_length=1000, description="Text query, any language.")] = None,
    image: Annotated[UploadFile | None, File(description="A photo to find products like.")] = None,
    k: K = 10,
    user_id: Shopper = None,
) -> Response:
    """Search by words and/or a photo; the ranked lists are fused by rank.

    The photo's header is checked (bytes, pixel count) before any pixel is decoded.
    """
    text = (q or "").strip() or None
    data = _read_upload(image, settings.max_upload_bytes)
    if text is None and data is None:
        raise ApiError(422, "give a text query q, an image, or both", field="q", location="body")
    try:
        return Results.response(svc.serve("search", user_id, lambda o: svc.search(
            text=text, image=data, k=k, flt=flt)))
    except ImageError as err:
        raise ApiError(422, f"image: {err}", field="image", location="body") from err
