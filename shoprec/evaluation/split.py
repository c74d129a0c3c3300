"""Train / test splits that never let the test period leak into training.

Two protocols: a global time split (what a deployed recommender faces: train on the past,
serve the future, many new items) and leave-last (each user's last visit held out, the usual
next-purchase protocol). Both return a ``Split`` whose helper sets name the hard cases:
cold items, cold users and held-out bought-together pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import permutations
from typing import Literal

from shoprec.evaluation.interactions import Interaction, items_of, users_of

#: The H&M sample runs 2018-09-20 .. 2020-09-22; this date leaves ~17% of purchases and
#: ~16 weeks for test, with most test items new (the cold-start case the data supports).
HM_SPLIT_DATE = datetime(2020, 6, 1, tzinfo=timezone.utc)


class LeakageError(AssertionError):
    """Raised when a split would let a test event inform training."""


@dataclass(frozen=True)
class Split:
    """Train and test events plus the sets the runner segments metrics by."""

    name: str
    train: tuple[Interaction, ...]
    test: tuple[Interaction, ...]
    cold_items: frozenset[str] = field(init=False)
    cold_users: frozenset[str] = field(init=False)
    bought_together: frozenset[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cold_items", frozenset(cold_items(self.train, self.test)))
        object.__setattr__(self, "cold_users", frozenset(cold_users(self.train, self.test)))
        object.__setattr__(self, "bought_together", frozenset(bought_together_pairs(self.test)))


def cold_items(train: Iterable[Interaction], test: Iterable[Interaction]) -> set[str]:
    """Test items nobody bought in training: only content-aware methods can rank them."""
    return items_of(test) - items_of(train)


def cold_users(train: Iterable[Interaction], test: Iterable[Interaction]) -> set[str]:
    """Test users with no training history: only non-personal methods can serve them."""
    return users_of(test) - users_of(train)


def bought_together_pairs(test: Iterable[Interaction]) -> set[tuple[str, str]]:
    """Ordered pairs (a, b) of distinct items in the same test basket, both directions.

    Ordered because the question asked of a method is "given a, is b among the items you
    suggest with it", and either item of a basket can be the one being viewed.
    """
    baskets: dict[str, set[str]] = {}
    for e in test:
        baskets.setdefault(e.session_id, set()).add(e.item_id)
    pairs: set[tuple[str, str]] = set()
    for items in baskets.values():
        pairs.update(permutations(sorted(items), 2))
    return pairs


def check_no_leakage(train: Sequence[Interaction], test: Sequence[Interaction], *, global_time: bool) -> None:
    """Raise ``LeakageError`` if anything of the test side is visible to training.

    Checks: no basket (session) on both sides; every user's training events are strictly
    earlier than that user's test events; with ``global_time`` every training event is
    strictly earlier than every test event.
    """
    shared = {e.session_id for e in train} & {e.session_id for e in test}
    if shared:
        raise LeakageError(f"{len(shared)} session(s) in both train and test, e.g. {sorted(shared)[0]!r}")
    if global_time and train and test:
        last_train = max(e.ts for e in train)
        first_test = min(e.ts for e in test)
        if not last_train < first_test:
            raise LeakageError(f"train reaches {last_train.isoformat()} but test starts {first_test.isoformat()}")
    last_train_by_user: dict[str, datetime] = {}
    for e in train:
        if e.user_id not in last_train_by_user or e.ts > last_train_by_user[e.user_id]:
            last_train_by_user[e.user_id] = e.ts
    for e in test:
        seen_until = last_train_by_user.get(e.user_id)
        if seen_until is not None and not seen_until < e.ts:
            raise LeakageError(
                f"user {e.user_id!r} has a training event at {seen_until.isoformat()} "
                f"not earlier than a test event at {e.ts.isoformat()}"
            )


def time_split(interactions: Sequence[Interaction], date: datetime = HM_SPLIT_DATE) -> Split:
    """Train: ts < ``date``; test: ts >= ``date``.

    The whole test period is unseen by every method, so popularity, co-occurrence and the
    item universe are all learned from the past only.
    """
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    train = tuple(e for e in interactions if e.ts < date)
    test = tuple(e for e in interactions if e.ts >= date)
    check_no_leakage(train, test, global_time=True)
    return Split(name=f"time split at {date.date().isoformat()}", train=train, test=test)


def leave_last_split(
    interactions: Sequence[Interaction],
    unit: Literal["day", "session"] = "day",
    hold_out_single_visit: bool = False,
) -> Split:
    """Each user's last day (or last session) goes to test, everything before to train.

    A user with a single visit has nothing to learn from; by default those users stay in
    training (they still teach item-item signal) and are not evaluated. With
    ``hold_out_single_visit`` their one visit is tested instead and they become cold users.
    Other users' later events stay in training: this is the usual leave-last protocol, not
    a global time cut; use ``time_split`` where that matters.
    """
    if unit not in ("day", "session"):
        raise ValueError(f"unit must be 'day' or 'session', got {unit!r}")

    def visit(e: Interaction) -> str:
        return e.ts.date().isoformat() if unit == "day" else e.session_id

    by_user: dict[str, list[Interaction]] = {}
    for e in interactions:
        by_user.setdefault(e.user_id, []).append(e)

    cutoff: dict[str, datetime] = {}
    for user, events in by_user.items():
        latest = max(events, key=lambda e: e.ts)
        last_visit = visit(latest)
        n_visits = len({visit(e) for e in events})
        if n_visits < 2 and not hold_out_single_visit:
            continue
        # Everything from the start of the last visit on is held out, so no training event
        # of this user can be later than any of their test events.
        cutoff[user] = min(e.ts for e in events if visit(e) == last_visit)

    train: list[Interaction] = []
    test: list[Interaction] = []
    for e in interactions:
        limit = cutoff.get(e.user_id)
        (test if limit is not None and e.ts >= limit else train).append(e)
    train_t, test_t = tuple(train), tuple(test)
    check_no_leakage(train_t, test_t, global_time=False)
    return Split(name=f"leave-last-{unit}", train=train_t, test=test_t)
