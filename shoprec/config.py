"""All of shoprec's configuration in one place.

Every field can be set from the environment as ``SHOPREC_<FIELD>`` (e.g. ``SHOPREC_STORE``,
``SHOPREC_QDRANT_URL``) so the CLI, the HTTP service and the tests share one source of truth.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPREC_", extra="ignore")

    # --- storage -------------------------------------------------------------------------
    store: Path = Field(Path("./shoprec-data"), description="Folder of the embedded store.")
    qdrant_url: str | None = Field(None, description="Use a Qdrant server instead of the embedded store.")
    qdrant_api_key: str | None = None
    collection: str = "products"
    min_free_mb: float = Field(
        64.0, description="Free disk space (MiB) kept beyond the embedded store's reserved file length; "
        "writes (and opening the store) are refused below it, since a full disk crashes Qdrant Edge "
        "(shoprec/storage.py). 0 disables the check.")
    shard_number: int = Field(1, description="Shards of the server collection (cluster mode).")
    replication_factor: int = Field(1, description="Replicas of each shard (cluster mode).")

    # --- encoders (names resolved by shoprec.encoders.registry) ---------------------------
    text_encoder: str = "use-multilingual"
    image_encoder: str = "efficientnet-lite0"
    joint_encoder: str = Field(
        "catalog-aligned",
        description="'catalog-aligned' (projection heads trained on the catalog) or "
        "'open_clip:ARCH:CHECKPOINT' with a local checkpoint file (or a hub tag where online).",
    )
    image_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Runtime of the timm image encoder's inference: 'onnx' (ONNX Runtime, ~4x faster "
        "on CPU; needs onnx + onnxruntime), 'torch', or 'auto' (onnx when installed and it matches torch on "
        "load, else torch). A mismatch always falls back to torch with a warning: same vectors, slower.")
    onnx_cache: Path | None = Field(
        None, description="Folder of exported ONNX models, keyed by model + weights hash + torch/onnx "
        "versions [default: $XDG_CACHE_HOME/shoprec/onnx, i.e. ~/.cache/shoprec/onnx]; shared by all stores.")
    jieba_user_dict: Path | None = None
    batch_size: int = 32
    image_workers: int = 2

    # --- image safety (shoprec/images.py, shoprec/safe_fetch.py) ----------------------------
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = Field(25_000_000, description="Most pixels an image header may claim "
                                  "(non-JPEG images are decoded at full size before being reduced).")
    max_image_side: int = Field(10_000, description="Longest side an image header may claim, in px.")
    max_image_aspect: float = Field(20.0, description="Most extreme width:height (or height:width) accepted.")
    allow_remote_images: bool = Field(False, description="Fetch http(s) image URLs of the catalog and of "
                                      "POST /items (public addresses only; see allow_private_image_hosts).")
    allow_private_image_hosts: bool = Field(
        False, description="Also fetch from private networks (10/8, 172.16/12, 192.168/16, 100.64/10, "
        "fc00::/7) for shops whose photos live on an intranet. Loopback, link-local (cloud metadata), "
        "multicast and reserved addresses are refused regardless.")
    remote_image_timeout_s: float = Field(3.0, description="Longest wait for a connect or for each read.")
    remote_image_deadline_s: float = Field(5.0, description="Longest time one URL may take, redirects included.")
    remote_image_batch_budget_s: float = Field(
        10.0, description="Longest time all remote images of one POST /items batch may take together; "
        "URLs left when it is spent are reported as image errors (the items are indexed by text).")
    remote_image_max_redirects: int = Field(3, description="Redirects followed per URL (each hop re-vetted).")

    # --- behaviour ------------------------------------------------------------------------
    weight_view: float = 1.0
    weight_click: float = 2.0
    weight_cart: float = 4.0
    weight_purchase: float = 8.0
    weight_dislike: float = -6.0
    half_life_days: float = 30.0
    session_weight: float = 0.5
    cf_neighbours: int = 30
    profile_vector: str = Field(
        "auto", description="Named vector the feed lives in: 'auto' (the joint space where it was "
        "trained on enough photos and beats text on the catalog's check, else text: indexing/serving_space.py), "
        "'text', 'image' or 'joint'.")
    events_db: Path | None = Field(None, description="SQLite file of events (default: STORE/events.sqlite).")
    database_url: str | None = Field(
        None, description="PostgreSQL URL (postgresql://USER:PASSWORD@HOST:5432/DB) of the behaviour state "
        "(events, popularity, served lists, ranker versions) shared by several `shoprec serve` workers; "
        "unset: the SQLite file (events_db). The password is never shown.")
    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        # any other scheme would be opened as a SQLite file named like the URL; the value itself is
        # not repeated (it holds a password)
        from .db import is_server_url  # light: no driver is imported

        if not url:  # set but empty (a compose file's default): unset
            return None
        if not is_server_url(url):
            raise ValueError("must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:5432/DB); "
                             "leave it unset for the SQLite file (SHOPREC_EVENTS_DB)")
        return url

    database_pool_size: int = Field(8, ge=2, description="PostgreSQL connections each worker keeps at most.")
    refresh_interval_s: float = Field(
        1.0, gt=0, description="Longest a worker goes without reading other workers' new events, forgets, "
        "user attributes and ranker versions (on PostgreSQL a notification wakes it at once; this is the "
        "floor). Bounds how stale one worker's feed can be after another worker's write.")
    session_timeout_minutes: float = Field(
        30.0, description="The latest session steers the feed while it is younger than this.")
    trending_half_life_days: float = Field(7.0, description="Half-life of popularity for trending.")
    cooc_basket_weight: float = Field(1.0, description="Bought-together weight of a shared basket/session.")
    cooc_user_weight: float = Field(0.3, description="Bought-together weight of the same shopper, other basket.")
    new_arrival_days: float = Field(14.0, description="Items created this recently are 'new arrivals'.")
    popularity_max_units: int = Field(
        3, ge=1, description="Most units one event adds to an item's popularity (trending and the ranker's "
        "popularity features): a quantity of 10^4 counts as this many, so one order cannot make an item "
        "trending for everyone.")

    # --- online measurement (shoprec/online/) ----------------------------------------------
    attribution_window_hours: float = Field(
        24.0, gt=0, description="A cart or purchase of an item this soon after a click on it in a recommended "
        "list is credited to that list (event time).")
    experiments_file: Path | None = Field(
        None, description="JSON file of A/B experiments (the POST /experiments shape, one or a list); each "
        "one not known yet is started when the service starts.")

    # --- input bounds (bounds.py): per field of the catalog and event formats ----------------
    max_id_chars: int = Field(256, ge=1, description="Item, user, session and event ids.")
    max_title_chars: int = Field(2000, ge=1)
    max_description_chars: int = Field(20000, ge=1)
    max_label_chars: int = Field(256, ge=1, description="Category and brand.")
    max_image_ref_chars: int = Field(2048, ge=1, description="Image path or URL.")
    max_attributes: int = Field(64, ge=0, description="Attributes per item.")
    max_attribute_key_chars: int = Field(128, ge=1)
    max_attribute_value_chars: int = Field(1000, ge=1)
    max_quantity: int = Field(10_000, ge=1, description="Largest quantity one event may carry.")

    # --- ranking (recommend/ranking/) ------------------------------------------------------
    ranker: str = Field("auto", description="'auto' (the learned model beside the store when it serves, "
                        "else the hand-tuned blend) or 'blend'.")
    ranker_dir: Path | None = Field(None, description="Folder of learned ranker versions [default: STORE/ranker].")
    ranker_label_days: float = Field(28.0, description="Length of each self-split label window (training).")
    ranker_screen_trees: int = Field(
        50, ge=0, description="A feed's candidates are scored by the learned ranker's first N trees, and only "
        "the few hundred it shows from by every tree (LightGBM's tree walking is most of a computed feed's "
        "CPU). 0: every candidate through every tree.")
    ranker_retrain_events: int = Field(
        5000, description="Retrain the ranker in the background after this many new events (0: never).")
    neighbour_cache_size: int = Field(
        50_000, description="Anchor items whose ANN neighbours the feed keeps in memory (cleared when "
        "the catalog changes; 0: always ask Qdrant).")
    warm_up: bool = Field(True, description="A server loads the feed's state and fills the neighbour cache for "
                          "the items shoppers touched on a background thread at start (first feeds then skip "
                          "those HNSW searches).")
    feed_concurrency: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else (os.cpu_count() or 1), ge=1,
        description="Feeds computed at the same time in one process [default: the CPUs this process may "
        "use]. A feed's candidates, features and reasons are Python holding the GIL (only LightGBM's "
        "scoring releases it): more feeds at once than cores only pass the GIL back and forth.")
    feed_cache_size: int = Field(10_000, description="Finished feeds kept for repeat requests (a user's "
                                 "own event, a catalog change or a new ranker invalidates theirs at once).")
    payload_cache_size: int = Field(20_000, description="Items whose stored payloads (title, price, photo, "
                                    "...) the feed keeps in memory to answer without a store read: cleared "
                                    "when this process changes the catalog, and kept at most "
                                    "SHOPREC_FEED_CACHE_TTL_S, so another writer's change shows as fast as in "
                                    "cached feeds (0: always read).")
    similar_cache_size: int = Field(20_000, description="'Similar items' answers kept until the catalog "
                                    "changes (0: no cache).")
    feed_cache_ttl_s: float = Field(60.0, description="Longest a cached feed is reused while other shoppers' "
                                    "events move popularity (0: no feed cache).")
    group_attribute: str = Field("department", description="Catalog attribute that groups items for "
                                 "'popular in your favourite department' (falls back to category).")
    segment_attributes: str = Field("age,gender,region", description="User attributes that define a "
                                    "segment (comma separated; ages in ten-year bands).")

    # --- colour in visual similarity (encoders/colour.py, recommend/visual.py) --------------
    index_colour: bool = Field(True, description="Give new stores the 'colour' vector (a store keeps the "
                               "vectors it was created with; one created before colour existed has none).")
    colour_descriptor: str = Field("lch-hist-v2", description="Colour descriptor of new stores (encoders/colour.py "
                                   "DESCRIPTORS); a store keeps the one it was indexed with.")
    index_look: bool = Field(True, description="Give new stores with colour the 'look' vector (photo features and "
                             "colour in a text-aligned space, encoders/look.py) that image similarity ranks by.")
    colour_weight_image: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of the colour descriptor in image similarity and photo "
        "search (score = (1-w) cos(look) + w cos(colour); cos(image) in a store without look vectors); chosen "
        "on 1,000 validation H&M items (not the eval's queries): 0.1 kept both the same-category and the "
        "same-colour share of the ten nearest at or above 0.6 (0: off).")
    colour_weight_joint: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of the colour descriptor in joint (default) similar items, "
        "chosen the same way (0: off).")
    colour_candidates: int = Field(
        100, ge=1, description="Nearest items of the image/joint vector that colour re-scores (one Qdrant "
        "query: prefetch + formula); 100 matched exact search on H&M.")
    colour_reason_min: float = Field(
        0.9, ge=0.0, le=1.0, description="Colour similarity (Bhattacharyya, 0..1) from which a match's reason "
        "says 'same colour'.")

    # --- cold start blend with a context item (recommend/feed.py); default MMR diversity ----
    blend_similarity: float = 1.0
    blend_popularity: float = 0.5
    mmr_lambda: float = 0.0

    # --- HTTP -----------------------------------------------------------------------------
    api_key: str | None = None
    read_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 8 * 1024 * 1024
    max_batch_items: int = Field(1000, description="Most items or events one POST /items or /events may carry "
                                 "(each batch is encoded inside the request).")
    image_root: Path | None = Field(
        None, description="Folder that relative image paths in POST /items resolve against "
        "[default: STORE/images]; absolute paths are refused over HTTP.")
    idempotency_ttl_hours: float = Field(
        24.0, gt=0, description="How long an Idempotency-Key's first answer is kept for retries.")
    idempotency_max_keys: int = Field(100_000, ge=1, description="Most Idempotency-Keys kept (oldest go first).")

    @property
    def event_weights(self) -> dict[str, float]:
        return {
            "view": self.weight_view,
            "click": self.weight_click,
            "cart": self.weight_cart,
            "purchase": self.weight_purchase,
            "dislike": self.weight_dislike,
            "impression": 0.0,  # shown is not interest; impressions never reach the behaviour log anyway
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
