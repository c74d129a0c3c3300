"""Products (and queries) -> the named vectors stored in Qdrant.

One place decides what each vector means:
- ``text``: the dense multilingual text encoder over title, category, brand, colour, description;
- ``image``: the image encoder's features of the product photo (absent without a photo);
- ``joint``: the joint text-image space; an item's joint vector is the normalised sum of its
  projected text and projected photo, so a text query and an image query both land near it;
- ``colour``: the photo's own colours (encoders/colour.py), which the CNN features ignore;
  absent from stores created before it existed (see ``ensure_collection``);
- ``look``: the photo's CNN features and colour in a text-aligned space (encoders/look.py), what
  image similarity and photo search rank by; like ``joint``, made from stored vectors once its
  space is trained, and absent from stores created before it existed;
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
from shoprec.encoders import look
from shoprec.encoders.colour import ColourDescriptor, for_dim
from shoprec.encoders.joint import CatalogAlignedSpace, JointSpace, build_joint, saved_space
from shoprec.encoders.lexical import LexicalEncoder
from shoprec.encoders.registry import build_image_encoder, build_text_encoder
from shoprec.indexing.store import JOINT_VERSION_FIELD, Hit, ItemPoint, SparseVec, VectorStore
from shoprec.lazy import lazy

log = logging.getLogger("shoprec.encoders")
#: Vectors a store may lack (created before they existed, or with them switched off).
OPTIONAL_VECTORS = ("colour", look.NAME)


def derived_version(joint: str | None, look_space: str | None) -> str | None:
    """What a stored point's ``joint_version`` names: the joint space, and the look space where
    the store has look vectors; new heads in either make both vectors of the point stale."""
    if joint is None or look_space is None:
        return joint
    return f"{joint}+look:{look_space}"


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
        """Identifies the spaces a stored joint (and look) vector came from; None while no joint
        space is fitted."""
        return derived_version(self.joint.version, self.look.version if self.stores_look else None)

    @lazy
    def colour(self) -> ColourDescriptor:
        """The settings' descriptor for a new store; an existing store's own (``bind``)."""
        return ColourDescriptor(self.settings.colour_descriptor)

    @lazy
    def stores_colour(self) -> bool:
        """Whether points get a ``colour`` vector: the store decides once it exists (False for one
        created before colour existed, or with ``index_colour`` off); new stores follow the setting."""
        return self.settings.index_colour

    @lazy
    def stores_look(self) -> bool:
        """Whether points get a ``look`` vector (it reads the colour vector); as ``stores_colour``."""
        return self.settings.index_colour and self.settings.index_look

    @lazy
    def look(self) -> CatalogAlignedSpace:
        return look.build(self.settings.text_encoder, self.settings.image_encoder, self.colour.name, self.look_dir)

    @property
    def look_dir(self) -> Path:
        return self.state_dir / "look-space"

    def dims(self) -> dict[str, int]:
        dims = {"text": self.text_encoder.dim, "image": self.image_encoder.dim, "joint": self.joint.dim}
        if self.stores_colour:
            dims["colour"] = self.colour.dim
        if self.stores_look:
            dims[look.NAME] = look.DIM
        return dims

    def bind(self, store: VectorStore) -> list[str]:
        """Follow an existing store's vectors: Qdrant (Edge above all) cannot add a named vector
        to an existing collection, so a store created before colour or look existed is indexed
        and queried without them, and one made with an older colour descriptor keeps it, queries
        included. Returns the optional vectors the settings want and the store lacks."""
        have = store.dense_dims()
        if have is None:
            return []
        missing = [n for n, wanted in (("colour", self.stores_colour), (look.NAME, self.stores_look))
                   if wanted and n not in have]
        self.stores_colour = "colour" in have
        self.stores_look = look.NAME in have
        if self.stores_colour and have["colour"] != self.colour.dim:
            self.colour = for_dim(have["colour"])
            self.look = look.build(self.settings.text_encoder, self.settings.image_encoder, self.colour.name,
                                   self.look_dir)
        return missing

    def ensure_collection(self, store: VectorStore) -> None:
        """Create the collection, or accept one that lacks only optional vectors (``bind``), and
        say once how to get them."""
        want = self.dims()
        have = store.dense_dims()

        def core(dims: dict[str, int]) -> dict[str, int]:
            return {n: d for n, d in dims.items() if n not in OPTIONAL_VECTORS}

        if have is not None and core(have) == core(want):
            missing = self.bind(store)
            if missing:
                log.warning("this store was created without the %s vector: similar items and photo search "
                            "use less of the photo until the catalog is re-indexed into a new store folder",
                            " and ".join(missing))
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
        colour_by_row = {}
        if self.stores_colour:
            for row in visual_by_row:
                given = colours[row] if colours is not None else None
                colour_by_row[row] = given if given is not None else self.colour.describe(images[row])
        look_by_row = self._looks_for(visual_by_row, colour_by_row)
        version = self.joint_version
        points = []
        for row, product in enumerate(products):
            vectors = {"text": text[row]}
            if row in visual_by_row:
                vectors["image"] = visual_by_row[row]
            if row in colour_by_row:
                vectors["colour"] = colour_by_row[row]
            if row in look_by_row:
                vectors[look.NAME] = look_by_row[row]
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

    def _looks_for(self, visual_by_row: dict[int, np.ndarray], colour_by_row: dict[int, np.ndarray]
                   ) -> dict[int, np.ndarray]:
        """Look vectors of the rows with a photo, once the look space is trained."""
        rows = sorted(set(visual_by_row) & set(colour_by_row))
        if not self.stores_look or not rows or not self.look.is_fitted:
            return {}
        vecs = self.look.project_image(look.features(np.stack([visual_by_row[r] for r in rows]),
                                                     np.stack([colour_by_row[r] for r in rows])))
        return dict(zip(rows, vecs))

    @property
    def derived_from(self) -> list[str]:
        """The stored vectors that joint and look vectors are made from."""
        return ["text", "image"] + (["colour"] if self.stores_colour else [])

    def derived_vectors(self, hits: Sequence[Hit]) -> list[dict[str, np.ndarray]]:
        """Joint (and look) vectors for stored items from their stored vectors (no re-encoding);
        ``hits`` carry ``derived_from``."""
        text = np.stack([h.vectors["text"] for h in hits]).astype(np.float32)
        has_image = np.array(["image" in h.vectors for h in hits])
        zeros = np.zeros(self.image_encoder.dim, np.float32)
        image = np.stack([h.vectors.get("image", zeros) for h in hits]).astype(np.float32)
        out: list[dict[str, np.ndarray]] = [{"joint": v} for v in self.joint.item_vectors(text, image, has_image)]
        looks = self._looks_for({i: h.vectors["image"] for i, h in enumerate(hits) if "image" in h.vectors},
                                {i: h.vectors["colour"] for i, h in enumerate(hits) if "colour" in h.vectors})
        for row, vec in looks.items():
            out[row][look.NAME] = vec
        return out

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
        cards = [saved_space(self.settings, self.joint_dir)]
        if self.stores_look:
            cards.append(look.saved(self.settings.text_encoder, self.settings.image_encoder, self.colour.name,
                                    self.look_dir))
        count = store.count()
        if any(card is None or not card.version or card.needs_training(count) for card in cards):
            return False
        version = derived_version(cards[0].version, cards[1].version if len(cards) > 1 else None)
        return all(hit.payload.get(JOINT_VERSION_FIELD) == version
                   for hit in store.scroll(fields=["item_id", JOINT_VERSION_FIELD]))

    def saved_joint_metrics(self) -> dict[str, Any] | None:
        """``joint_metrics()`` of the saved space, read from its card without loading torch."""
        card = saved_space(self.settings, self.joint_dir)
        return dict(card.metrics) if card is not None and card.metrics is not None else None

    def has_lexical_state(self) -> bool:
        return (self.state_dir / "lexical.json").is_file()

    def _joint_due(self, count: int) -> bool:
        return self.joint.trainable and self.joint.needs_training(count)

    def _look_due(self, count: int) -> bool:
        return self.stores_look and self.look.needs_training(count)

    def joint_needs_training(self, store: VectorStore) -> bool:
        """Whether the joint or the look space should (re)fit on the store's pairs now."""
        count = store.count()
        return self._joint_due(count) or self._look_due(count)

    def train_joint(self, store: VectorStore) -> dict[str, Any]:
        """Fit the joint space (and the look space) that are due on every (text, photo) pair
        stored in ``store`` and save them; the joint space's metrics, {} when there are fewer
        than two pairs."""
        count = store.count()
        hits = store.scroll(fields=["item_id"], with_vectors=self.derived_from)
        pairs = [h for h in hits if "image" in h.vectors and "text" in h.vectors]
        if len(pairs) < 2:
            return {}
        text = np.stack([h.vectors["text"] for h in pairs]).astype(np.float32)
        image = np.stack([h.vectors["image"] for h in pairs]).astype(np.float32)
        if self._joint_due(count):
            self.joint = self.joint.fit_catalog(text, image, self.joint_dir)
        coloured = [i for i, h in enumerate(pairs) if "colour" in h.vectors]
        if self._look_due(count) and len(coloured) >= 2:
            colours = np.stack([pairs[i].vectors["colour"] for i in coloured]).astype(np.float32)
            self.look = look.fit(self.look, text[coloured], look.features(image[coloured], colours), self.look_dir)
            log.info("look space trained: held-out text->photo recall@10 %s",
                     self.look.metrics.get("heldout", {}).get("recall@10"))
        return self.joint.metrics if self.joint.is_fitted else {}

    # ------------------------------------------------------------------ queries
    def query_text(self, text: str) -> tuple[np.ndarray, np.ndarray | None, SparseVec]:
        dense = self.text_encoder.encode([text])[0]
        joint = self.joint.query_text(text, dense) if self.joint.is_fitted else None
        return dense, joint, self.lexical.encode_query(text)

    def query_colour(self, image: Image.Image) -> np.ndarray | None:
        """A photo's colour descriptor (the store's own), or None where the store has no colour
        vector (created before it, or with ``index_colour`` off): nothing could compare with it."""
        return self.colour.describe(image) if self.stores_colour else None

    def query_look(self, visual: np.ndarray, colour: np.ndarray | None) -> np.ndarray | None:
        """A photo's look vector, where the store has look vectors and the look space is trained."""
        if colour is None or not self.stores_look or not self.look.is_fitted:
            return None
        return self.look.project_image(look.features(visual[None, :], colour[None, :]))[0]

    def query_image(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        visual = self.image_encoder.encode([image])[0]
        joint = self.joint.query_image(image, visual) if self.joint.is_fitted else None
        return visual, joint
