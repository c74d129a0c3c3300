"""Online measures per surface x variant (x day), with intervals and a significance test.

The unit is a *list shown*: a served list with at least one impression (or a credited click,
which proves it was shown). Per list: was something clicked, put in the cart, bought (all
credited, see attribution.py), and for how much. From that, per group:

- ``ctr``, ``add_to_cart_rate``, ``conversion_rate``: lists with a credited click / cart /
  purchase over lists shown, with 95% Wilson score intervals;
- ``revenue`` (sum of price x quantity of credited purchases), ``revenue_per_list`` (with a
  normal-approximation 95% interval), ``orders`` (distinct baskets with a credited purchase)
  and ``items_per_order`` (credited units per order);
- ``coverage``: distinct items shown over the catalogue's size.

Variants are compared with the control (the experiment's first variant) by a two-sided pooled
two-proportion z-test on each rate, per surface and over all surfaces ("all"). The verdict is
about the experiment's primary metric over all surfaces, at alpha 0.05 split over the variants
compared (Bonferroni). Lists of one shopper are not independent (a shopper who clicks a lot
clicks in both of their lists), so with few shoppers the p-values are optimistic; the verdict
says how many lists it rests on. A list belongs to the day (UTC, event time) it was first shown.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..db import Conn
from .experiments import DEFAULT_VARIANT, Experiment

ALL = "all"
RATES = ("ctr", "add_to_cart_rate", "conversion_rate")
ALPHA = 0.05
_Z95 = 1.959963984540054
METHOD = ("95% Wilson score intervals for rates; two-sided pooled two-proportion z-test of each variant "
          "against the control per surface; verdict at alpha 0.05 (Bonferroni over variants) on the "
          "experiment's metric over all surfaces. Unit: a list shown.")


@dataclass
class Tally:
    lists: int = 0
    items_shown: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    clicked: int = 0
    carted: int = 0
    bought: int = 0
    revenue: float = 0.0
    revenue_sq: float = 0.0
    units: int = 0
    orders: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)

    def add_list(self, lst: "_List") -> None:
        self.lists += 1
        self.items_shown += lst.shown
        self.clicks += lst.clicks
        self.carts += lst.carts
        self.purchases += lst.purchases
        self.clicked += lst.clicks > 0
        self.carted += lst.carts > 0
        self.bought += lst.purchases > 0
        self.revenue += lst.revenue
        self.revenue_sq += lst.revenue ** 2
        self.units += lst.units
        self.orders |= lst.orders

    def rate(self, name: str) -> int:
        return {"ctr": self.clicked, "add_to_cart_rate": self.carted, "conversion_rate": self.bought}[name]

    def summary(self, catalogue: int, intervals: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"lists": self.lists, "items_shown": self.items_shown, "clicks": self.clicks,
                               "carts": self.carts, "purchases": self.purchases}
        for name in RATES:
            successes = self.rate(name)
            value = successes / self.lists if self.lists else None
            out[name] = {"value": value, **(dict(zip(("low", "high"), wilson(successes, self.lists)))
                                            if intervals else {})}
        mean = self.revenue / self.lists if self.lists else None
        rpl: dict[str, Any] = {"value": mean}
        if intervals:
            if self.lists > 1 and mean is not None:
                var = max(0.0, (self.revenue_sq - self.lists * mean ** 2) / (self.lists - 1))
                half = _Z95 * math.sqrt(var / self.lists)
                rpl.update(low=max(0.0, mean - half), high=mean + half)
            else:
                rpl.update(low=None, high=None)
        out.update(revenue=round(self.revenue, 6), revenue_per_list=rpl, orders=len(self.orders), units=self.units,
                   items_per_order=(self.units / len(self.orders)) if self.orders else None,
                   distinct_items_shown=len(self.items),
                   coverage=(len(self.items) / catalogue) if catalogue else None)
        return out


@dataclass
class _List:
    surface: str
    variant: str
    day: str = ""
    first: float = math.inf
    shown: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    units: int = 0
    orders: set[str] = field(default_factory=set)


def wilson(successes: int, n: int, z: float = _Z95) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """(z, two-sided p) of H0: p1 == p2, pooled standard error; None where undefined."""
    if n1 == 0 or n2 == 0:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).date().isoformat()


def _where(experiment: str | None) -> tuple[str, tuple[Any, ...]]:
    # not "IS ?": PostgreSQL's IS takes no parameter (and IS NOT DISTINCT FROM needs SQLite 3.39)
    return ("r.experiment IS NULL", ()) if experiment is None else ("r.experiment = ?", (experiment,))


def load_lists(conn: Conn, experiment: str | None) -> dict[str, _List]:
    """Every list shown (of this experiment; None: answers outside experiments)."""
    cond, params = _where(experiment)
    lists: dict[str, _List] = {}
    for rec_id, surface, variant, first, shown in conn.execute(
            "SELECT i.rec_id, r.surface, r.variant, MIN(i.ts), COUNT(*) FROM impressions i"
            f" JOIN recs r ON r.rec_id = i.rec_id WHERE {cond} GROUP BY i.rec_id, r.surface, r.variant", params):
        lists[rec_id] = _List(surface, variant or DEFAULT_VARIANT, first=first, shown=shown)
    for rec_id, surface, variant, type_, ts, price, quantity, basket in conn.execute(
            "SELECT a.rec_id, r.surface, r.variant, a.type, a.ts, a.price, a.quantity, a.basket FROM attributions a"
            f" JOIN recs r ON r.rec_id = a.rec_id WHERE {cond}", params):
        lst = lists.get(rec_id)
        if lst is None:
            lst = lists[rec_id] = _List(surface, variant or DEFAULT_VARIANT)
        lst.first = min(lst.first, ts)
        if type_ == "click":
            lst.clicks += 1
        elif type_ == "cart":
            lst.carts += 1
        elif type_ == "purchase":
            units = int(quantity or 1)
            lst.purchases += 1
            lst.units += units
            lst.revenue += float(price or 0.0) * units
            lst.orders.add(basket)
    for lst in lists.values():
        lst.day = _day(lst.first)
    return lists


def _shown_items(conn: Conn, experiment: str | None) -> list[tuple[str, str, str, str]]:
    cond, params = _where(experiment)
    return [(r[0], r[1] or DEFAULT_VARIANT, _day(r[2]), r[3]) for r in conn.execute(
        "SELECT r.surface, r.variant, MIN(i.ts), i.item_id FROM impressions i JOIN recs r ON r.rec_id = i.rec_id"
        f" WHERE {cond} GROUP BY i.rec_id, i.item_id, r.surface, r.variant", params)]


def compute(conn: Conn, experiment: Experiment | None, catalogue: int,
            since: str | None = None) -> dict[str, Any]:
    """The /stats document: totals with intervals, daily series, tests and a verdict."""
    name = experiment.name if experiment else None
    lists = {k: v for k, v in load_lists(conn, name).items() if since is None or v.day >= since}
    totals: dict[tuple[str, str], Tally] = defaultdict(Tally)
    daily: dict[tuple[str, str, str], Tally] = defaultdict(Tally)
    for lst in lists.values():
        for surface in (lst.surface, ALL):
            totals[(surface, lst.variant)].add_list(lst)
            daily[(lst.day, surface, lst.variant)].add_list(lst)
    for surface, variant, day, item in _shown_items(conn, name):
        if since is not None and day < since:
            continue
        for s in (surface, ALL):
            totals[(s, variant)].items.add(item)
            daily[(day, s, variant)].items.add(item)
    variants = [v.name for v in experiment.spec.variants] if experiment else [DEFAULT_VARIANT]
    order = {v: i for i, v in enumerate(variants)}
    groups = [{"surface": s, "variant": v, **t.summary(catalogue, True)}
              for (s, v), t in sorted(totals.items(), key=lambda kv: (kv[0][0] != ALL, kv[0][0],
                                                                     order.get(kv[0][1], 99), kv[0][1]))]
    series = [{"day": d, "surface": s, "variant": v, **t.summary(catalogue, False)}
              for (d, s, v), t in sorted(daily.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                        order.get(kv[0][2], 99)))]
    tests = _tests(totals, variants)
    return {
        "experiment": experiment.as_dict() if experiment else None,
        "since": since,
        "catalogue_items": catalogue,
        "method": METHOD,
        "groups": groups,
        "daily": series,
        "tests": tests,
        "verdict": _verdict(experiment, totals, tests),
    }


def _tests(totals: dict[tuple[str, str], Tally], variants: list[str]) -> list[dict[str, Any]]:
    if len(variants) < 2:
        return []
    control = variants[0]
    alpha = ALPHA / (len(variants) - 1)
    out = []
    for surface in sorted({s for s, _ in totals}, key=lambda s: (s != ALL, s)):
        base = totals.get((surface, control))
        for variant in variants[1:]:
            other = totals.get((surface, variant))
            if base is None or other is None:
                continue
            for metric in RATES:
                z, p = two_proportion_test(base.rate(metric), base.lists, other.rate(metric), other.lists)
                out.append({"surface": surface, "metric": metric, "control": control, "variant": variant,
                            "control_rate": base.rate(metric) / base.lists, "variant_rate":
                            other.rate(metric) / other.lists, "z": z, "p_value": p,
                            "significant": p is not None and p < alpha, "alpha": alpha})
    return out


def _verdict(experiment: Experiment | None, totals: dict[tuple[str, str], Tally],
             tests: list[dict[str, Any]]) -> dict[str, Any]:
    if experiment is None:
        return {"winner": None, "significant": False, "text": "no experiment: nothing to compare"}
    metric = experiment.spec.metric
    mine = [t for t in tests if t["surface"] == ALL and t["metric"] == metric]
    n = sum(t.lists for (s, _), t in totals.items() if s == ALL)
    if not mine:
        return {"winner": None, "significant": False, "metric": metric,
                "text": f"not enough data: no lists shown yet in every variant ({n} lists)"}
    significant = [t for t in mine if t["significant"]]
    control = experiment.spec.variants[0].name
    if not significant:
        best = max(mine, key=lambda t: t["p_value"] is not None and -t["p_value"])
        p = best["p_value"]
        return {"winner": None, "significant": False, "metric": metric, "p_value": p,
                "text": f"no significant difference in {metric} yet ({n} lists; smallest p = "
                        f"{'n/a' if p is None else f'{p:.3g}'})"}
    better = [t for t in significant if t["variant_rate"] > t["control_rate"]]
    if better:
        top = max(better, key=lambda t: t["variant_rate"])
        winner, rate, other, p = top["variant"], top["variant_rate"], top["control_rate"], top["p_value"]
        loser = control
    else:  # every significant difference is a variant doing worse: the control wins
        top = min(significant, key=lambda t: t["p_value"])
        winner, rate, other, p = control, top["control_rate"], top["variant_rate"], top["p_value"]
        loser = top["variant"]
    return {"winner": winner, "significant": True, "metric": metric, "p_value": p,
            "text": f"{winner} beats {loser} on {metric}: {rate:.2%} vs {other:.2%} "
                    f"(p = {p:.3g}, two-proportion z-test, {n} lists)"}


def counters(conn: Conn) -> list[tuple[str, str, str, str, float]]:
    """(counter, experiment, surface, variant, value) over the whole log, for /metrics."""
    out: list[tuple[str, str, str, str, float]] = []
    for exp, surface, variant, n in conn.execute(
            "SELECT experiment, surface, variant, COUNT(*) FROM recs GROUP BY 1, 2, 3"):
        out.append(("lists_served", exp or "", surface, variant or DEFAULT_VARIANT, n))
    for exp, surface, variant, items, shown in conn.execute(
            "SELECT r.experiment, r.surface, r.variant, COUNT(*), COUNT(DISTINCT i.rec_id) FROM impressions i"
            " JOIN recs r ON r.rec_id = i.rec_id GROUP BY 1, 2, 3"):
        out.append(("impressions", exp or "", surface, variant or DEFAULT_VARIANT, items))
        out.append(("lists_with_impressions", exp or "", surface, variant or DEFAULT_VARIANT, shown))
    for exp, surface, variant, type_, n, revenue in conn.execute(
            "SELECT r.experiment, r.surface, r.variant, a.type, COUNT(*),"
            " SUM(COALESCE(a.price, 0) * COALESCE(a.quantity, 1)) FROM attributions a"
            " JOIN recs r ON r.rec_id = a.rec_id GROUP BY 1, 2, 3, 4"):
        out.append((f"{type_}s", exp or "", surface, variant or DEFAULT_VARIANT, n))
        if type_ == "purchase":
            out.append(("revenue", exp or "", surface, variant or DEFAULT_VARIANT, float(revenue or 0.0)))
    return out
