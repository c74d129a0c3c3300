"""What an indexing run did, and what it could not do, line by line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from shoprec.catalog import RowError


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    deleted: int = 0
    joint_updated: int = 0
    row_errors: list[RowError] = field(default_factory=list)
    image_errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0
    joint_metrics: dict[str, float] = field(default_factory=dict)
    serving_space: dict[str, str] = field(default_factory=dict)  # vector + why (serving_space.py)

    @property
    def failed(self) -> int:
        return len(self.row_errors)

    def summary(self) -> str:
        parts = [
            f"{self.indexed} indexed",
            f"{self.unchanged} unchanged",
            f"{self.failed} rejected",
            f"{len(self.image_errors)} without image",
        ]
        if self.deleted:
            parts.append(f"{self.deleted} deleted")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"

    def write_details(self, path: Path) -> None:
        """One JSON object per problem, so a shop can grep or load them."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for kind, errors in (("row", self.row_errors), ("image", self.image_errors)):
                for err in errors:
                    fh.write(json.dumps({"kind": kind, "line": err.line, "item_id": err.item_id,
                                         "reason": err.reason}, ensure_ascii=False) + "\n")
