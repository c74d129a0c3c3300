"""Products (and queries) -> the named vectors stored in Qdrant.

One place decides what each vector means:
- ``text``: the dense multilingual text encoder over title, category, brand, colour, description;
- ``image``: the image encoder's features of the product photo (absent without a photo);
- ``joint``: the joint text-image space; an item's joint vector is the normalised sum of its
  projected text and projected photo, so a text query and an image query both land near it;
- ``colour``: the photo's own colours (encoders/colour.py), which the CNN features ignore;
  absent from stores created before it existed (see ``ensure_collection``);
- ``lexical``: jieba/BM25 term weights (Qdrant applies IDF).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shoprec.catalog import Product
from shoprec.config import Settings
from shoprec.encoders.colour import ColourDescriptor
from shoprec.encoders.joint import JointSpace, build_joint, saved_space
from shoprec.encoders.lexical import LexicalEncoder
from shoprec.encoders.registry import build_image_encoder, build_text_encoder
from shoprec.indexing.store import JOINT_VERSION_FIELD, Hit, ItemPoint, SparseVec, VectorStore
from shoprec.lazy import lazy

log = logging.getLogger("shoprec.encoders")


def _loaded(kind: str, name: str, build: Any) -> Any:
    """Build an encoder with a log line on each side: the first write or query of a process waits
    seconds for it, and an operator should see why."""
    log.info("loading the %s encoder %s (once per process)", kind, name)
    started = time.perf_counter()
    encoder = build(name)
    runtime = getattr(encoder, "backend", None)  # timm image encoders: onnx, or torch after a fallback
    log.info("%s encoder %s ready in %.1f s%s", kind, name, time.perf_counter() - started,
             f" (runs on {runtime})" if runtime else "")
    return encoder


class ProductEmbedder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = Path(settings.store)

    # ------------------------------------------------------------------ encoders (lazy)
    @lazy
    def text_encoder(self):
        return _loaded("text", self.settings.text_encoder, build_text_encoder)

    @lazy
    def image_encoder(self):
        settings = self.settings
        return _loaded("image", settings.image_encoder,
                       lambda name: build_image_encoder(name, settings.image_backend, settings.onnx_cache))

    @lazy
    def lexical(self) -> LexicalEncoder:
        user_dict = self.settings.jieba_user_dict
        return LexicalEncoder(user_dict=user_dict, avg_len=self._lexical_state().get("avg_len"))

    @lazy
    def joint(self) -> JointSpace:
        return build_joint(self.settings, self.joint_dir)

    @property
    def joint_dir(self) -> Path:
        return self.state_dir / "joint-space"

    @property
    def joint_version(self) -> str | None:
        """Identifies the space a stored joint vector came from; None while none is fitted."""
        return self.joint.version

    colour = ColourDescriptor()

    @lazy
    def stores_colour(self) -> bool:
        """Whether points get a ``colour`` vector: the store decides once it exists (False for one
        created before colour existed, or with ``index_colour`` off); new stores follow the setting."""
        return self.settings.index_colour

    def dims(self) -> dict[str, int]:
        joint_dim = self.joint.dim
        dims = {"text": self.text_encoder.dim, "image": self.image_encoder.dim, "joint": joint_dim}
        return {**dims, "colour": self.colour.dim} if self.stores_colour else dims

    def ensure_collection(self, store: VectorStore) -> None:
        """Create the collection, or accept one created before the colour vector existed: Qdrant
        (Edge above all) cannot add a named vector to an existing collection, so such a store is
        indexed without colour and says once how to get it."""
        want = self.dims()
        have = store.dense_dims()
        without_colour = {n: d for n, d in want.items() if n != "colour"}
        if have is not None and {n: d for n, d in have.items() if n != "colour"} == without_colour:
            if self.stores_colour and "colour" not in have:
                log.warning("this store was created without the colour vector: similar items and photo search "
                            "ignore colour until the catalog is re-indexed into a new store folder")
            self.stores_colour = "colour" in have
            store.ensure_collection(have)
            return
        store.ensure_collection(want)

    # ------------------------------------------------------------------ lexical corpus stats
    def _lexical_state(self) -> dict[str, Any]:
        path = self.state_dir / "lexical.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def fit_lexical(self, products: Sequence[Product]) -> None:
        """Fix BM25's average document length once, from the first catalog indexed.

        Kept fixed afterwards so items indexed later are weighted like the ones already stored.
        """
        if self.lexical.avg_len is not None or not products:
            return
        self.lexical.fit(p.text_for_lexical() for p in products)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "lexical.json").write_text(json.dumps({"avg_len": self.lexical.avg_len}), encoding="utf-8")

    # ------------------------------------------------------------------ items
    def embed(self, products: Sequence[Product], images: Sequence[Image.Image | None],
              image_paths: Sequence[str | None],
              colours: Sequence[np.ndarray | None] | None = None,
              pixels: Sequence[np.ndarray | None] | None = None) -> list[ItemPoint]:
        """Encode a batch; ``images[i]`` is None where the photo is absent or failed.

        ``colours[i]`` is the photo's colour descriptor when the caller computed it beside the
        decode (the indexer's image threads); otherwise it is computed here. ``pixels[i]``, where
        given, is ``images[i]`` already prepared by the image encoder's ``prepare`` (on the same
        threads); the encoder then skips resizing it.
        """
        bs = self.settings.batch_size
        text = self.text_encoder.encode([p.text_for_embedding() for p in products], batch_size=bs)
        with_image = [i for i, img in enumerate(images) if img is not None]
        inputs = [pixels[i] if pixels is not None and pixels[i] is not None else images[i] for i in with_image]
        visual = self.image_encoder.encode(inputs, batch_size=bs)
        visual_by_row = {row: visual[j] for j, row in enumerate(with_image)}
        joint = self._joint_for(products, images, text, visual_by_row)
        version = self.joint_version
        points = []
        for row, product in enumerate(products):
            vectors = {"text": text[row]}
            if row in visual_by_row:
                vectors["image"] = visual_by_row[row]
                if self.stores_colour:
                    given = colours[row] if colours is not None else None
                    vectors["colour"] = given if given is not None else self.colour.encode([images[row]])[0]
            payload = product.payload()
            if row in visual_by_row and image_paths[row]:
                payload["image_path"] = image_paths[row]
            if joint is not None:
                vectors["joint"] = joint[row]
                payload[JOINT_VERSION_FIELD] = version
            points.append(ItemPoint(product.id, vectors, payload, self.lexical.encode_document(product.text_for_lexical())))
        return points

    def _joint_for(self, products: Sequence[Product], images: Sequence[Image.Image | None], text: np.ndarray,
                   visual_by_row: dict[int, np.ndarray]) -> np.ndarray | None:
        if not self.joint.is_fitted:
            return None  # the indexer fits the space after phase 1 and fills joint vectors in then
        image_rows = np.zeros((len(products), self.image_encoder.dim), np.float32)
        for row, vec in visual_by_row.items():
            image_rows[row] = vec
        has_image = np.array([i in visual_by_row for i in range(len(products))], dtype=bool)
        return self.joint.item_vectors(text, image_rows, has_image,
                                       texts=[p.text_for_embedding() for p in products], images=images)

    def joint_vectors(self, hits: Sequence[Hit]) -> np.ndarray:
        """Joint vectors for stored items from their stored text/image vectors (no re-encoding)."""
        text = np.stack([h.vectors["text"] for h in hits]).astype(np.float32)
        has_image = np.array(["image" in h.vectors for h in hits])
        zeros = np.zeros(self.image_encoder.dim, np.float32)
        image = np.stack([h.vectors.get("image", zeros) for h in hits]).astype(np.float32)
        return self.joint.item_vectors(text, image, has_image)

    # ------------------------------------------------------------------ the joint space
    def joint_metrics(self) -> dict[str, Any] | None:
        """How the joint space was trained and how it did on held-out pairs (a CLIP space says
        it is pretrained); None while it is not fitted."""
        return dict(self.joint.metrics) if self.joint.is_fitted else None

    def joint_is_current(self, store: VectorStore) -> bool:
        """Whether the joint phase of indexing has nothing to do: the space ``build_joint`` would
        load is not due for retraining and every stored point carries its version. Judged from
        the space's saved card (``space.json``) and the payloads, without loading torch or an
        encoder, so re-indexing an unchanged catalog takes seconds; False when unsure (the
        indexer then runs the full phase, which decides for itself)."""
        card = saved_space(self.settings, self.joint_dir)
        if card is None or not card.version or card.needs_training(store.count()):
            return False
        return all(hit.payload.get(JOINT_VERSION_FIELD) == card.version
                   for hit in store.scroll(fields=["item_id", JOINT_VERSION_FIELD]))

    def saved_joint_metrics(self) -> dict[str, Any] | None:
        """``joint_metrics()`` of the saved space, read from its card without loading torch."""
        card = saved_space(self.settings, self.joint_dir)
        return dict(card.metrics) if card is not None and card.metrics is not None else None

    def has_lexical_state(self) -> bool:
        return (self.state_dir / "lexical.json").is_file()

    def joint_needs_training(self, store: VectorStore) -> bool:
        return self.joint.trainable and self.joint.needs_training(store.count())

    def train_joint(self, store: VectorStore) -> dict[str, Any]:
        """Fit the joint space on every (text, photo) pair stored in ``store`` and save it;
        {} when there are fewer than two pairs."""
        hits = store.scroll(fields=["item_id"], with_vectors=["text", "image"])
        pairs = [h for h in hits if "image" in h.vectors and "text" in h.vectors]
        if len(pairs) < 2:
            return {}
        text = np.stack([h.vectors["text"] for h in pairs]).astype(np.float32)
        image = np.stack([h.vectors["image"] for h in pairs]).astype(np.float32)
        self.joint = self.joint.fit_catalog(text, image, self.joint_dir)
        return self.joint.metrics

    # ------------------------------------------------------------------ queries
    def query_text(self, text: str) -> tuple[np.ndarray, np.ndarray | None, SparseVec]:
        dense = self.text_encoder.encode([text])[0]
        joint = self.joint.query_text(text, dense) if self.joint.is_fitted else None
        return dense, joint, self.lexical.encode_query(text)

    def query_colour(self, image: Image.Image) -> np.ndarray:
        return self.colour.encode([image])[0]

    def query_image(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        visual = self.image_encoder.encode([image])[0]
        joint = self.joint.query_image(image, visual) if self.joint.is_fitted else None
        return visual, joint
