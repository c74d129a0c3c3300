"""``shoprec report``: the /stats document as terminal tables (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _pct(measure: dict[str, Any] | None) -> str:
    if not measure or measure.get("value") is None:
        return "–"
    text = f"{measure['value']:.2%}"
    if measure.get("low") is not None:
        text += f" [{measure['low']:.2%}, {measure['high']:.2%}]"
    return text


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def tables(stats: dict[str, Any]) -> list[Table]:
    exp = stats.get("experiment")
    title = f"experiment {exp['name']} ({exp['state']})" if exp else "answers outside experiments"
    if stats.get("since"):
        title += f", since {stats['since']}"
    totals = Table(title=title)
    for column in ("surface", "variant", "lists", "CTR [95% CI]", "add-to-cart", "conversion", "revenue",
                   "items/order", "coverage"):
        totals.add_column(column, justify="left" if column in ("surface", "variant") else "right")
    for g in stats["groups"]:
        totals.add_row(g["surface"], g["variant"], str(g["lists"]), _pct(g["ctr"]), _pct(g["add_to_cart_rate"]),
                       _pct(g["conversion_rate"]), _num(g["revenue"]), _num(g["items_per_order"]),
                       _num(g["coverage"], "{:.1%}"))
    out = [totals]
    tests = [t for t in stats["tests"]]
    if tests:
        table = Table(title="variant vs control (two-sided two-proportion z-test)")
        for column in ("surface", "metric", "control", "variant", "control rate", "variant rate", "p", "significant"):
            table.add_column(column)
        for t in tests:
            table.add_row(t["surface"], t["metric"], t["control"], t["variant"], f"{t['control_rate']:.2%}",
                          f"{t['variant_rate']:.2%}", _num(t["p_value"], "{:.3g}"), "yes" if t["significant"] else "no")
        out.append(table)
    return out
