"""``OnlineMeasurement``: what the engine holds for online measurement (see the package doc)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import attribution, stats
from .experiments import Assignment, Experiment, Experiments, read_file
from .tracking import ServedList, Tracker

if TYPE_CHECKING:
    from ..config import Settings
    from ..db import Conn
    from ..recommend.event_store import EventStore
    from ..recommend.events import Event
    from ..results import Recommendation, Served

log = logging.getLogger("shoprec.online")

SURFACES = ("feed", "similar", "complementary", "cart", "search", "trending")


class OnlineMeasurement:
    def __init__(self, events: "EventStore", settings: "Settings") -> None:
        self.events = events
        self.window_s = settings.attribution_window_hours * 3600.0
        self.experiments = Experiments(events)
        self.tracker = Tracker(events)
        if settings.experiments_file is not None:
            started = self.experiments.declare(read_file(settings.experiments_file))
            if started:
                log.info("experiments started from %s: %s", settings.experiments_file, ", ".join(started))

    def assign(self, user_id: str | None) -> Assignment:
        return self.experiments.assign(user_id)

    def serve(self, surface: str, user_id: str | None, assignment: Assignment,
              results: "Sequence[Recommendation]", forgets_seen: int) -> "Served":
        """Give an answer its own rec_id and positions (a cached list is copied, never changed).
        ``forgets_seen``: the forget generation read before the answer was computed."""
        from ..results import Served

        served = self.tracker.record(surface, user_id, assignment, [r.id for r in results], forgets_seen)
        return Served(rec_id=served.rec_id, surface=surface, experiment=assignment.experiment,
                      variant=assignment.variant,
                      results=[r.model_copy(update={"position": i}) for i, r in enumerate(results, start=1)])

    # ------------------------------------------------------------------ ingest (engine's transaction)
    def lists(self, conn: "Conn", events: "Sequence[Event]") -> dict[str, ServedList]:
        return self.tracker.lookup(conn, (e.rec_id for e in events if e.rec_id is not None))

    @staticmethod
    def problem(event: "Event", lists: dict[str, ServedList]) -> tuple[str, str] | None:
        return None if event.rec_id is None else attribution.problem(event, lists.get(event.rec_id))

    def record(self, conn: "Conn", events: "Sequence[Event]", lists: dict[str, ServedList]) -> int:
        self.tracker.flush(conn)  # lists before the impressions and credits that name them
        return attribution.record(conn, events, lists, self.window_s)

    def forget(self, conn: "Conn", user_id: str) -> None:
        """Inside forget's transaction: drop the user's lists not written yet (the written ones,
        their impressions and credits are deleted with the user's events)."""
        self.tracker.forget(user_id)

    # ------------------------------------------------------------------ reading
    def experiment_for_stats(self, name: str | None) -> Experiment | None:
        """The named experiment; by default the running one, else the latest, else none."""
        if name is not None:
            return self.experiments.get(name)
        if self.experiments.running is not None:
            return self.experiments.running
        all_ = self.experiments.all()
        return all_[-1] if all_ else None

    def stats(self, catalogue: int, experiment: str | None = None, since: str | None = None) -> dict[str, Any]:
        self.tracker.flush()
        return stats.compute(self.events.conn(), self.experiment_for_stats(experiment), catalogue, since)

    def counters(self) -> list[tuple[str, str, str, str, float]]:
        self.tracker.flush()
        return stats.counters(self.events.conn())

    def close(self) -> None:
        self.tracker.close()
