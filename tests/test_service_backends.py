"""The whole path (index -> search / similar / events -> feed) on the server backend too.

The contract suite proves each store method; this proves shoprec as a whole does not lean on
anything only the embedded store does. qdrant-client's local mode stands in for a server.
"""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient

from shoprec.config import Settings
from shoprec.indexing.server import ServerStore
from shoprec.service import Shoprec


def test_demo_shop_on_the_server_backend(demo_shop, tmp_path) -> None:
    catalog, events = demo_shop
    service = Shoprec(Settings(store=tmp_path / "state"), store=ServerStore(QdrantClient(":memory:")))
    report = service.index_catalog(catalog, progress=False)
    assert report.indexed == 48 and report.joint_metrics and service.count() == 48

    hits = service.search("纯棉T恤", k=5)
    assert [h.category for h in hits] == ["T恤"] * 5
    assert {h.category for h in service.search("running shoes", k=3)} == {"跑鞋"}

    similar = service.similar("handbag-red", k=4, modality="joint")
    assert all(r.category == "手提包" and r.id != "handbag-red" for r in similar)

    # the look vector is created, filled from stored vectors, and serves photo queries here too
    assert {"colour", "look"} <= set(service.store.dense_dims() or {})
    with_photo = [h for h in service.store.scroll(with_vectors=["image", "look"]) if "image" in h.vectors]
    assert with_photo and all("look" in h.vectors for h in with_photo)
    anchor = with_photo[0]
    assert service.similar(anchor.item_id, k=3, modality="image", mmr=0.5)
    photo = Path(anchor.payload["image_path"]).read_bytes()
    assert service.search(image=photo, k=3)[0].id == anchor.item_id
    again = service.index_catalog(catalog, progress=False)
    assert (again.indexed, again.joint_updated) == (0, 0)

    assert service.ingest_events_file(events).ingested == 600
    goes_with = service.complementary(["phone-black"], k=3)
    assert goes_with and all(r.category == "手机壳" for r in goes_with)
    feed = service.recommend("u001", k=5)
    assert len(feed) == 5 and all(r.reason for r in feed)
    service.close()
