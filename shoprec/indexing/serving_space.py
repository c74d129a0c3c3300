"""Which vector space the feed lives in, decided when the index is built.

The joint text-image space is only worth serving when it was trained on enough photo pairs
and holds up against plain text vectors on the catalog's own check (the share of an item's
nearest neighbours in its category, on a fixed sample). A catalog without photos, or with a
handful, gets the text space — the feed must always have one. The decision and its reason are
written to ``STORE/serving-space.json`` and shown by ``shoprec index``, ``/health`` and the
evaluation report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .store import VectorStore

FILE = "serving-space.json"
#: Fewer (title, photo) pairs than this and the joint heads are not trusted.
MIN_JOINT_PAIRS = 500


@dataclass(frozen=True)
class SpaceChoice:
    vector: str
    reason: str
    checks: dict[str, Any]


def choose(store: VectorStore, joint_metrics: dict[str, Any] | None, sample: int = 200,
           seed: int = 0) -> SpaceChoice:
    from ..evaluation.similar import similar_quality

    metrics = joint_metrics or {}
    pairs = int(metrics.get("n_train", 0)) + int(metrics.get("n_heldout", 0))
    if not metrics:
        return SpaceChoice("text", "no joint space was trained (the catalog has no photos to train it on)",
                           {"joint_pairs": 0})
    if pairs < MIN_JOINT_PAIRS:
        return SpaceChoice("text", f"the joint space saw only {pairs} photo pairs (needs {MIN_JOINT_PAIRS})",
                           {"joint_pairs": pairs})
    quality = similar_quality(store, modalities=("text", "joint"), sample=sample, seed=seed)
    text = quality["text"]["same_category_at_k"]
    joint = quality["joint"]["same_category_at_k"]
    checks = {"joint_pairs": pairs, "same_category@10_text": text, "same_category@10_joint": joint,
              "heldout_title_to_photo_recall@10": (metrics.get("heldout") or {}).get("recall@10")}
    if quality["joint"]["queries"] == 0 or joint < text:
        return SpaceChoice("text", f"text neighbours agree on category more often than joint ones "
                                   f"({text:.3f} vs {joint:.3f} on {quality['text']['queries']} items)", checks)
    return SpaceChoice("joint", f"joint neighbours agree on category at least as often as text ones "
                                f"({joint:.3f} vs {text:.3f})", checks)


def save(folder: Path, choice: SpaceChoice) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(choice), indent=2))
    tmp.replace(folder / FILE)


def load(folder: Path) -> SpaceChoice | None:
    try:
        raw = json.loads((folder / FILE).read_text())
        return SpaceChoice(str(raw["vector"]), str(raw["reason"]), dict(raw.get("checks") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve(setting: str, folder: Path, store: VectorStore) -> SpaceChoice:
    """The space to serve: an explicit setting wins; ``auto`` reads the decision the indexer
    saved (an index built before this existed is judged now, and the verdict saved)."""
    if setting != "auto":
        return SpaceChoice(setting, f"set by SHOPREC_PROFILE_VECTOR={setting}", {})
    saved = load(folder)
    if saved is not None:
        return saved
    try:  # the joint space's saved card (encoders/joint.py), read without loading torch
        meta = json.loads((folder / "joint-space" / "space.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    try:
        count = store.count()
    except RuntimeError:  # a store never indexed has no collection yet: nothing to judge
        return SpaceChoice("text", "nothing indexed yet", {})
    choice = choose(store, meta.get("metrics")) if count else SpaceChoice(
        "text", "nothing indexed yet", {})
    if count > 0:  # an empty store decides nothing lasting: the next index run judges again
        save(folder, choice)
    return choice
