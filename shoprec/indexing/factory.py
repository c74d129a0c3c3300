"""Pick the storage backend from settings, so callers never import a backend directly."""

from __future__ import annotations

from qdrant_client import QdrantClient

from ..config import Settings
from .edge import EdgeStore
from .server import ServerStore
from .store import VectorStore


def open_store(settings: Settings) -> VectorStore:
    """A Qdrant server when ``qdrant_url`` is set, else the embedded Edge shard under ``store``."""
    if settings.qdrant_url:
        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
        return ServerStore(client, settings.collection, shard_number=settings.shard_number,
                           replication_factor=settings.replication_factor)
    return EdgeStore(settings.store, settings.collection, min_free_mb=settings.min_free_mb)
