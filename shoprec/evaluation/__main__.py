"""``python -m shoprec.evaluation``: split, run the named methods, write the report.

A thin command over ``split``, ``registry``, ``runner`` and ``report``; it holds no
evaluation logic of its own.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import typer

from shoprec.evaluation.features import STAND_IN_LABEL, read_products, stand_in_item_features
from shoprec.evaluation.interactions import read_events
from shoprec.evaluation.registry import METHODS, build_methods
from shoprec.evaluation.report import write_report
from shoprec.evaluation.runner import evaluate
from shoprec.evaluation.split import HM_SPLIT_DATE, leave_last_split, time_split

app = typer.Typer(add_completion=False, help=__doc__)


class SplitKind(str, Enum):
    time = "time"
    leave_last = "leave-last"


class Features(str, Enum):
    none = "none"
    stand_in = "stand-in"


@app.command()
def main(
    data: Path = typer.Option(Path("../shared/data/hm"), help="folder with catalog.jsonl and events.jsonl"),
    out: Path = typer.Option(Path("reports/eval"), help="where report.md, results.json and plots go"),
    split: SplitKind = typer.Option(SplitKind.time, help="time split or each user's last day held out"),
    date: str = typer.Option(HM_SPLIT_DATE.date().isoformat(), help="time split date (test: ts >= date)"),
    methods: str = typer.Option(",".join(METHODS), help="comma-separated method names"),
    features: Features = typer.Option(Features.stand_in, help="item content features for content-aware methods"),
    ks: str = typer.Option("10,20,50", help="comma-separated cut-offs"),
    seed: int = typer.Option(0, help="seed for every stochastic method"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Evaluate baselines on one split of a shop's purchase data."""
    started = time.perf_counter()
    products = read_products(data / "catalog.jsonl")
    catalog_ids = [p.id for p in products]
    events = read_events(data / "events.jsonl")
    if split is SplitKind.time:
        cut = datetime.fromisoformat(date).replace(tzinfo=timezone.utc)
        chosen = time_split(events, cut)
    else:
        chosen = leave_last_split(events)
    item_features = stand_in_item_features(products, seed=seed) if features is Features.stand_in else None
    names = [n.strip() for n in methods.split(",") if n.strip()]
    built, unavailable = build_methods(names, seed=seed, have_features=item_features is not None)
    results = evaluate(
        built, chosen.train, chosen.test, catalog_ids,
        ks=[int(k) for k in ks.split(",")], item_features=item_features,
        progress=progress, unavailable=unavailable,
    )
    elapsed = time.perf_counter() - started
    results["run"] = {"split": chosen.name, "seed": seed, "features": features.value, "seconds_total": round(elapsed, 1)}
    notes = [
        f"Data: `{data}`; split: {chosen.name}; seed {seed}.",
        "Item features: " + (STAND_IN_LABEL + " (64-d), not shoprec's encoders." if item_features is not None else "none."),
        f"Total run time {elapsed:.1f} s.",
    ]
    report = write_report(results, out, title=f"Evaluation: {data.name}, {chosen.name}", notes=notes)
    typer.echo(f"wrote {report}")


if __name__ == "__main__":
    app()
