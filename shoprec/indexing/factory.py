"""Pick the storage backend from settings, so callers never import a backend directly."""

from __future__ import annotations

from ..config import Settings
from .store import VectorStore


def open_store(settings: Settings) -> VectorStore:
    """A Qdrant server when ``qdrant_url`` is set, else the embedded Edge shard under ``store``.

    Each backend is imported only when chosen: qdrant_client alone takes ~0.6 s to import (its
    pydantic models), more than a whole CLI query on the embedded store should take.
    """
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from .server import ServerStore

        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
        return ServerStore(client, settings.collection, shard_number=settings.shard_number,
                           replication_factor=settings.replication_factor)
    from .edge import EdgeStore

    return EdgeStore(settings.store, settings.collection, min_free_mb=settings.min_free_mb)
