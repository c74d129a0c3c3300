"""A shop simulator: real shoppers' next purchases replayed through the HTTP API.

For each (shopper, day) of the purchases on or after ``--since`` in an events file (H&M's by
default), in time order, it does what a storefront and its shopper would:

1. asks for the shopper's feed (``GET /users/{id}/recommendations``): the server picks the A/B
   variant and names the answer by ``rec_id``;
2. reports every item of the list as shown (``impression`` events with the rec_id);
3. for each item the shopper really bought that day: if the list held it, a click on it (with
   the rec_id) and, a few minutes later, the purchase (without rec_id: the server credits it to
   the list through the click, within the attribution window); if not, the browse model: with
   probability ``--browse-click`` a click on a random item of the list (curiosity that did not
   buy), and the purchase is made elsewhere in the shop (not credited);

so CTR and conversion measure how often a variant's list held what the shopper came to buy.
Events carry deterministic event_ids and each batch an Idempotency-Key: a re-run or a retried
request counts nothing twice.

``prepare`` makes the store for a fair run: a copy of a served store with every event on or after
the cut removed (popularity and the clock recounted), so the feed cannot know the purchases it
is about to be judged on. The learned ranker in the copy stays as trained (it holds no item ids).

    python bench/simulate_shop.py prepare /work/stores/hm-serve /tmp/hm-sim --cut 2020-09-08
    SHOPREC_STORE=/tmp/hm-sim SHOPREC_RANKER_RETRAIN_EVENTS=0 shoprec serve --port 8765 &
    python bench/simulate_shop.py run --url http://127.0.0.1:8765 --since 2020-09-08 --users 300 \\
        --experiment popular-vs-auto --treatment ranker=popular
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

#: H&M's events beside the checkout (../shared/data/hm), or where SHOPREC_HM_DIR says.
HM_EVENTS = Path(os.environ.get("SHOPREC_HM_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "hm")
                 ) / "events.jsonl"


# ---------------------------------------------------------------------- ground truth
def next_purchases(events: Path, since: str, users: int, seed: int = 7) -> list[tuple[str, str, list[dict]]]:
    """(day, user, purchases that day) on or after ``since``, for ``users`` shoppers drawn at
    random (seeded), in day order."""
    by_user_day: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with events.open() as fh:
        for line in fh:
            e = json.loads(line)
            if e.get("type") != "purchase":
                continue
            day = e["ts"][:10]
            if day >= since:
                by_user_day[(e["user_id"], day)].append(e)
    everyone = sorted({u for u, _ in by_user_day})
    chosen = set(random.Random(seed).sample(everyone, min(users, len(everyone))))
    return sorted(((day, u, evs) for (u, day), evs in by_user_day.items() if u in chosen), key=lambda t: (t[0], t[1]))


def _stamp(day: str, user: str, minutes: float) -> str:
    """A time on ``day`` spread by user (deterministic), plus ``minutes``."""
    offset = int(hashlib.sha256(user.encode()).hexdigest()[:6], 16) % (10 * 60)  # 08:00 .. 18:00
    t = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + timedelta(hours=8, minutes=offset + minutes)
    return t.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- one visit
def visit(client: httpx.Client, day: str, user: str, bought: list[dict], k: int, browse_click: float,
          rng: random.Random, headers: dict[str, str]) -> dict[str, Any]:
    answer = client.get(f"/users/{user}/recommendations", params={"k": k}, headers=headers)
    answer.raise_for_status()
    served = answer.json()
    rec_id, shown = served["rec_id"], [r["id"] for r in served["results"]]
    events = [{"user_id": user, "item_id": item, "type": "impression", "rec_id": rec_id,
               "ts": _stamp(day, user, 0), "event_id": f"sim:{rec_id}:imp:{i}"} for i, item in enumerate(shown)]
    hits = 0
    for n, p in enumerate(bought):
        item = p["item_id"]
        purchase = {"user_id": user, "item_id": item, "type": "purchase", "ts": _stamp(day, user, 5 + n),
                    "price": p.get("price"), "quantity": p.get("quantity"), "session_id": p.get("session_id"),
                    "event_id": f"sim:{user}:{day}:buy:{n}"}
        if item in shown:
            hits += 1
            events.append({"user_id": user, "item_id": item, "type": "click", "rec_id": rec_id,
                           "ts": _stamp(day, user, 1 + n), "event_id": f"sim:{rec_id}:click:{n}"})
        elif shown and rng.random() < browse_click:
            events.append({"user_id": user, "item_id": rng.choice(shown), "type": "click", "rec_id": rec_id,
                           "ts": _stamp(day, user, 1 + n), "event_id": f"sim:{rec_id}:browse:{n}"})
        events.append({k_: v for k_, v in purchase.items() if v is not None})
    report = client.post("/events", json=events, headers={**headers, "Idempotency-Key": f"sim:{rec_id}"})
    report.raise_for_status()
    body = report.json()
    if body["errors"]:
        raise RuntimeError(f"events refused for {user} on {day}: {body['errors'][:3]}")
    return {"variant": served["variant"], "shown": len(shown), "hits": hits, "attributed": body["attributed"]}


def start_experiment(client: httpx.Client, name: str, treatment: dict[str, Any], headers: dict[str, str]) -> None:
    running = client.get("/experiments", headers=headers).json()["running"]
    if running == name:
        return
    if running is not None:
        raise SystemExit(f"experiment {running!r} is running on this server; stop it first")
    spec = {"name": name, "metric": "ctr",
            "variants": [{"name": "control"}, {"name": "treatment", "overrides": treatment}]}
    response = client.post("/experiments", json=spec, headers=headers)
    if response.status_code != 201:
        raise SystemExit(f"POST /experiments: {response.status_code} {response.text}")


def run(client: httpx.Client, visits: list[tuple[str, str, list[dict]]], k: int = 12, browse_click: float = 0.05,
        seed: int = 7, headers: dict[str, str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Replay the visits; a summary per variant (what the simulator saw, for checking /stats)."""
    rng = random.Random(seed)
    headers = headers or {}
    per_variant: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    started = time.perf_counter()
    for n, (day, user, bought) in enumerate(visits, start=1):
        seen = visit(client, day, user, bought, k, browse_click, rng, headers)
        tally = per_variant[seen["variant"]]
        tally["visits"] += 1
        tally["visits_with_hit"] += seen["hits"] > 0
        tally["attributed"] += seen["attributed"]
        if progress and n % 50 == 0:
            print(f"  {n}/{len(visits)} visits, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return {"visits": len(visits), "seconds": round(time.perf_counter() - started, 1),
            "per_variant": {v: dict(t) for v, t in per_variant.items()}}


# ---------------------------------------------------------------------- prepare
def prepare(source: Path, dest: Path, cut: str) -> dict[str, Any]:
    """Copy a store and drop its events on or after ``cut`` (popularity and clock recounted)."""
    from shoprec.config import Settings
    from shoprec.recommend.event_store import EventStore
    from shoprec.recommend.popularity import Popularity

    if dest.exists():
        raise SystemExit(f"{dest} exists; pick a new folder")
    subprocess.run(["cp", "-a", "--sparse=always", str(source), str(dest)], check=True)
    cut_ts = datetime.fromisoformat(cut).replace(tzinfo=timezone.utc).timestamp()
    settings = Settings(store=dest)
    store = EventStore(dest / "events.sqlite", min_free_mb=0)
    try:
        with store.transaction() as conn:
            items = [r[0] for r in conn.execute("SELECT DISTINCT item_id FROM events WHERE ts >= ?", (cut_ts,))]
            removed = conn.execute("DELETE FROM events WHERE ts >= ?", (cut_ts,)).rowcount
            Popularity(store, settings.event_weights, settings.trending_half_life_days,
                       settings.popularity_max_units).recount(conn, items)
            EventStore.reset_clock(conn)
        store.checkpoint()
        kept = store.conn().execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        store.close()
    return {"store": str(dest), "cut": cut, "events_removed": removed, "events_kept": kept}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="copy a store without the events on or after --cut")
    p.add_argument("source", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--cut", required=True, help="YYYY-MM-DD")
    r = sub.add_parser("run", help="replay shoppers through a running server")
    r.add_argument("--url", default="http://127.0.0.1:8000")
    r.add_argument("--events", type=Path, default=HM_EVENTS)
    r.add_argument("--since", required=True, help="replay purchases on or after this day (YYYY-MM-DD)")
    r.add_argument("--users", type=int, default=300)
    r.add_argument("--k", type=int, default=12)
    r.add_argument("--browse-click", type=float, default=0.05,
                   help="chance of clicking a random list item when the list misses what the shopper buys")
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--api-key", default=None)
    r.add_argument("--experiment", default=None, help="start this experiment (control vs treatment) first")
    r.add_argument("--treatment", default="ranker=popular", help="the treatment's overrides, KEY=VALUE,...")
    r.add_argument("--out", type=Path, default=None, help="write the summary and /stats here (JSON)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(json.dumps(prepare(args.source, args.dest, args.cut), indent=1))
        return
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    visits = next_purchases(args.events, args.since, args.users, args.seed)
    with httpx.Client(base_url=args.url, timeout=120) as client:
        if args.experiment:
            treatment = {}
            for part in filter(None, args.treatment.split(",")):
                key, _, value = part.partition("=")
                treatment[key] = float(value) if key == "mmr" else int(value) if key == "candidates" else value
            start_experiment(client, args.experiment, treatment, headers)
        print(f"replaying {len(visits)} visits of {len({u for _, u, _ in visits})} shoppers", file=sys.stderr)
        summary = run(client, visits, args.k, args.browse_click, args.seed, headers, progress=True)
        stats = client.get("/stats", headers=headers).json()
    summary["verdict"] = stats["verdict"]
    summary["totals"] = [{k: g[k] for k in ("surface", "variant", "lists", "clicks", "purchases", "revenue")}
                         | {m: g[m]["value"] for m in ("ctr", "conversion_rate")}
                         for g in stats["groups"] if g["surface"] == "all"]
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "stats": stats}, indent=1))


if __name__ == "__main__":
    main()
