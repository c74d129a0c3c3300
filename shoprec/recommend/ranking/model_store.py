"""Where learned ranker versions live, so that every worker serves the current one.

``FileModels``: ``STORE/ranker/VERSION/{model.txt,card.json}`` and a ``current`` pointer — one
machine (the SQLite default), every process reads the same folder.

``DatabaseModels``: rows of the ``models`` table (PostgreSQL). Workers on other hosts share no
folder, but they share the database: a training run inserts a row (model text + card), the
newest row of a name is current, and each worker compares ``version()`` when it refreshes and
loads a new model without a restart. The newest ``keep`` rows stay (a card history; a rollback is
a re-insert).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from .rankers import LearnedRanker, read_card, save_card


class ModelStore(Protocol):
    def save(self, card: dict[str, Any], ranker: LearnedRanker | None) -> None:
        """Make ``card`` (and ``ranker``'s model, when one serves) the current version."""

    def load(self) -> LearnedRanker | None:
        """The current model when it is ``LearnedRanker.usable``, else None."""

    def card(self) -> dict[str, Any] | None:
        """The current card (also of a model that does not serve)."""

    def version(self) -> str | None:
        """The current version's id (cheap: asked on every refresh)."""


class FileModels:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def save(self, card: dict[str, Any], ranker: LearnedRanker | None) -> None:
        if ranker is not None:
            ranker.save(self.folder)
        else:
            save_card(self.folder, card)

    def load(self) -> LearnedRanker | None:
        return LearnedRanker.load(self.folder)

    def card(self) -> dict[str, Any] | None:
        return read_card(self.folder)

    def version(self) -> str | None:
        try:
            return (self.folder / "current").read_text().strip()
        except OSError:
            return None


class DatabaseModels:
    """Versions in the ``models`` table of the events database (``shoprec.db``)."""

    def __init__(self, events: Any, name: str = "ranker", keep: int = 20) -> None:
        self.events = events
        self.name = name
        self.keep = keep  # newest versions kept (the card history and rollbacks)

    def save(self, card: dict[str, Any], ranker: LearnedRanker | None) -> None:
        body = ranker.to_text().encode("utf-8") if ranker is not None else None
        with self.events.transaction() as conn:
            conn.execute("INSERT INTO models (name, version, card, body, created_at) VALUES (?, ?, ?, ?, ?)",
                         (self.name, str(card["version"]), json.dumps(card), body, time.time()))
            # a retrain every few thousand events would otherwise grow the table without end
            conn.execute("DELETE FROM models WHERE name = ? AND id NOT IN "
                         "(SELECT id FROM models WHERE name = ? ORDER BY id DESC LIMIT ?)",
                         (self.name, self.name, self.keep))
            self.events.db.notify(conn, "model")

    def _current(self, columns: str) -> Any:
        return self.events.conn().execute(f"SELECT {columns} FROM models WHERE name = ? ORDER BY id DESC LIMIT 1",
                                          (self.name,)).fetchone()

    def load(self) -> LearnedRanker | None:
        row = self._current("card, body")
        if row is None or row[1] is None:
            return None
        card = json.loads(row[0])
        return LearnedRanker.from_text(bytes(row[1]).decode("utf-8"), card) if LearnedRanker.usable(card) else None

    def card(self) -> dict[str, Any] | None:
        row = self._current("card")
        return None if row is None else json.loads(row[0])

    def version(self) -> str | None:
        row = self._current("version")
        return None if row is None else str(row[0])
