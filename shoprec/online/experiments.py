"""A/B experiments: named variants of the serving settings, users split by a stable hash.

An experiment is data: a name, a salt, a primary metric and variants, each with a traffic share
and a few settings overrides that a recommendation call takes as parameters (no second engine,
no second store handle):

- ``ranker``: ``auto`` (the learned ranker where one serves, else the blend), ``blend`` (the
  hand-tuned blend), ``learned`` (the learned ranker; the blend where none serves) or
  ``popular`` (the cold-start blend for everyone: best sellers, no personal signal — a
  deliberately weak variant to check that the measurement can tell variants apart);
- ``mmr``: diversity 0..1 of the feed and of "similar";
- ``candidates``: how many candidates the feed's ranker scores.

A user is in variant ``v`` when ``sha256(salt + user_id)`` read as a fraction of 2^64 falls in
``v``'s slice of the cumulative shares: the same user always gets the same variant (across
restarts and replicas), and a new salt reshuffles everyone. Requests without a user id are not
part of the experiment (they are served, and counted, as variant ``default``).

At most one experiment runs at a time. Stopping it may promote a winner: its overrides then
serve everyone (variant ``default`` is the promoted settings) until another experiment starts.
Experiments live in the events database, so they survive a restart; a JSON file named by
``SHOPREC_EXPERIMENTS_FILE`` may declare them too (started once, if not known yet).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:  # the recommend package imports this one: no import cycle at run time
    from ..recommend.event_store import EventStore

RankerChoice = Literal["auto", "blend", "learned", "popular"]
Metric = Literal["ctr", "add_to_cart_rate", "conversion_rate"]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]

#: Variant label of answers outside any running experiment.
DEFAULT_VARIANT = "default"


class Overrides(BaseModel):
    """Serving settings a variant changes; unset fields keep the server's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ranker: RankerChoice | None = Field(None, description="Which ranker orders the feed.")
    mmr: float | None = Field(None, ge=0, le=1, description="Diversity (MMR) of the feed and of similar items.")
    candidates: int | None = Field(None, ge=10, le=5000, description="Candidates the feed's ranker scores.")


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    share: float = Field(1.0, gt=0, le=1000, description="Traffic weight (shares are normalised).")
    overrides: Overrides = Field(default_factory=Overrides)


class ExperimentSpec(BaseModel):
    """What POST /experiments (or the experiments file) declares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    variants: list[Variant] = Field(min_length=2, max_length=10, description="The first is the control.")
    salt: str | None = Field(None, min_length=1, max_length=64, description="Hash salt [default: the name].")
    metric: Metric = Field("ctr", description="The measure the verdict is about.")

    @model_validator(mode="after")
    def _distinct_names(self) -> "ExperimentSpec":
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must differ, got {names}")
        if DEFAULT_VARIANT in names:
            raise ValueError(f"'{DEFAULT_VARIANT}' names answers outside experiments; pick another variant name")
        return self


@dataclass(frozen=True)
class Experiment:
    spec: ExperimentSpec
    state: str  # "running" | "stopped"
    started_at: float
    stopped_at: float | None = None
    winner: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def as_dict(self) -> dict:
        return {**self.spec.model_dump(), "state": self.state, "started_at": self.started_at,
                "stopped_at": self.stopped_at, "winner": self.winner}


@dataclass(frozen=True)
class Assignment:
    """Which experiment and variant an answer belongs to, and the settings it is served with."""

    experiment: str | None
    variant: str
    overrides: Overrides


class ExperimentError(ValueError):
    """A request about experiments that cannot be done (names the field)."""

    def __init__(self, message: str, field: str = "name", status: int = 409) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def bucket(salt: str, user_id: str) -> float:
    """A user's stable position in [0, 1) for this salt."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def choose(spec: ExperimentSpec, user_id: str) -> Variant:
    total = sum(v.share for v in spec.variants)
    x = bucket(spec.salt or spec.name, user_id) * total
    for v in spec.variants:
        x -= v.share
        if x < 0:
            return v
    return spec.variants[-1]


class Experiments:
    """The experiments table, with the running one (and the promoted settings) kept in memory."""

    def __init__(self, events: "EventStore") -> None:
        self.events = events
        self._running: Experiment | None = None
        self._promoted = Overrides()
        self._reload()

    def _reload(self) -> None:
        all_ = self.all()
        self._running = next((e for e in all_ if e.state == "running"), None)
        promoted = [e for e in all_ if e.state == "stopped" and e.winner]
        self._promoted = Overrides()
        if promoted and self._running is None:
            last = max(promoted, key=lambda e: e.stopped_at or 0.0)
            self._promoted = next(v.overrides for v in last.spec.variants if v.name == last.winner)

    def all(self) -> list[Experiment]:
        rows = self.events.conn().execute(
            "SELECT spec, state, started_at, stopped_at, winner FROM experiments ORDER BY started_at")
        return [Experiment(ExperimentSpec.model_validate_json(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def get(self, name: str) -> Experiment:
        for e in self.all():
            if e.name == name:
                return e
        raise ExperimentError(f"no experiment named {name!r}", status=404)

    @property
    def running(self) -> Experiment | None:
        return self._running

    def assign(self, user_id: str | None) -> Assignment:
        running = self._running
        if running is None or not user_id:
            return Assignment(None, DEFAULT_VARIANT, self._promoted)
        v = choose(running.spec, user_id)
        return Assignment(running.name, v.name, v.overrides)

    def start(self, spec: ExperimentSpec) -> Experiment:
        with self.events.transaction() as conn:
            if conn.execute("SELECT 1 FROM experiments WHERE name = ?", (spec.name,)).fetchone():
                raise ExperimentError(f"an experiment named {spec.name!r} exists already; pick a new name")
            running = conn.execute("SELECT name FROM experiments WHERE state = 'running'").fetchone()
            if running:
                raise ExperimentError(f"experiment {running[0]!r} is running; stop it first")
            conn.execute("INSERT INTO experiments VALUES (?, ?, 'running', ?, NULL, NULL)",
                         (spec.name, spec.model_dump_json(), time.time()))
        self._reload()
        return self.get(spec.name)

    def stop(self, name: str, promote: str | None = None) -> Experiment:
        found = self.get(name)
        if found.state != "running":
            raise ExperimentError(f"experiment {name!r} is not running")
        if promote is not None and promote not in {v.name for v in found.spec.variants}:
            raise ExperimentError(f"experiment {name!r} has no variant {promote!r}", field="promote", status=422)
        with self.events.transaction() as conn:
            conn.execute("UPDATE experiments SET state = 'stopped', stopped_at = ?, winner = ? WHERE name = ?",
                         (time.time(), promote, name))
        self._reload()
        return self.get(name)

    def declare(self, specs: Iterable[ExperimentSpec]) -> list[str]:
        """Start the declared experiments not known yet (a file read at every start-up must not
        restart a stopped one). Names of those started."""
        known = {e.name for e in self.all()}
        started = []
        for spec in specs:
            if spec.name not in known:
                self.start(spec)
                started.append(spec.name)
        return started


def read_file(path: Path) -> list[ExperimentSpec]:
    """Experiments of a JSON file: one object or a list of them (the POST /experiments shape)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"experiments file {path}: {err}") from None
    out = []
    for i, entry in enumerate(raw if isinstance(raw, list) else [raw]):
        try:
            out.append(ExperimentSpec.model_validate(entry))
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'experiment'}: {e['msg']}"
                                 for e in err.errors())
            raise ValueError(f"experiments file {path}, entry {i}: {problems}") from None
    return out
