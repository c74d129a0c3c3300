"""Recommendations: similar, complementary, personalised and trending, from content and behaviour.

engine.RecommendEngine is the entry point; events (format + reader) -> event_store (SQLite)
-> popularity / cf (incremental models) and ranked_feed (candidates + ranker) -> Recommendation.
"""

from .engine import RecommendEngine, UnknownItem
from .events import Event, EventError, EventRow, IngestReport, read_events

__all__ = ["Event", "EventError", "EventRow", "IngestReport", "RecommendEngine", "UnknownItem", "read_events"]
