"""Cheap row hashes confirmed by the photos' bytes, kept beside the store instead of in it.

A fresh clone, a restored volume or a re-provisioned photo folder gives every photo a new mtime,
so every row's cheap hash (text + the photo's size and mtime) changes while nothing it encodes
does. The indexer then reads the bytes, finds them unchanged and must remember that, or the next
run reads them all again. Writing the new hash into each point's payload cost 275 s on the 17,033
H&M items (one payload write per point), and Qdrant Edge moves every point it updates out of its
indexed segment: the HNSW graph was rebuilt, and 23 of 200 items' top-50 text neighbours changed
with it, which moved what the ranker was trained on and the evaluation's figures by a few per cent.

So a confirmation is kept here as ``item_id -> (the stored hash it vouches for, the hash seen)``.
It holds only while the point's stored hash is still the one it vouches for: any re-encoding of
the item, by whatever path, writes a new stored hash and so retires the entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from shoprec.files import write_atomic

FILE_NAME = "seen-hashes.json"

log = logging.getLogger(__name__)

Seen = dict[str, tuple[str, str]]


def load(store_dir: Path) -> Seen:
    """The confirmations saved for this store; none when there is no file or it cannot be read
    (then the photos' bytes are read again, which is slower but never wrong)."""
    path = Path(store_dir) / FILE_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring %s (%s): photos whose mtime changed are read again", path, err)
        return {}
    if not isinstance(raw, dict):
        log.warning("ignoring %s: not a JSON object", path)
        return {}
    return {str(k): (str(v[0]), str(v[1])) for k, v in raw.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v)}


def vouches(seen: Seen, item_id: str, stored_hash: object, digest: str) -> bool:
    """Whether the row's current cheap hash was confirmed against the point as it is stored now."""
    return seen.get(item_id) == (stored_hash, digest)


def save(store_dir: Path, seen: Mapping[str, tuple[str, str]], stored_hashes: Mapping[str, object]) -> None:
    """Write the confirmations still valid (their item stored with the hash they vouch for),
    atomically; no file when none is left. A failure (full or read-only disk, a writer beside
    this one) is only logged: the file saves work, it is never needed for a right answer."""
    keep = {k: list(v) for k, v in sorted(seen.items()) if stored_hashes.get(k) == v[0]}
    path = Path(store_dir) / FILE_NAME
    try:
        if not keep:
            path.unlink(missing_ok=True)
            return
        write_atomic(path, json.dumps(keep, separators=(",", ":")).encode("utf-8"))
    except OSError as err:
        log.warning("could not save %s (%s): photos whose mtime changed will be read again", path, err)
