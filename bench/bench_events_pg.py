"""Behaviour state on PostgreSQL beside SQLite, in the same run, on the H&M events.

For each backend: ingest the first N events (the whole slice through ``ingest_file``, 1000 a
transaction, and again as POST-sized batches of 50, each its own transaction), then time the
personalised feed for sampled shoppers (feed cache off: every call computes). Then two real
``shoprec serve`` workers per backend over one database: an event acknowledged by worker A, how
long until worker B's feed for that shopper changes (the staleness bound: PostgreSQL wakes B by
NOTIFY, SQLite only by polling every SHOPREC_REFRESH_INTERVAL_S).

The store indexes only the items the slice names, by text (no photos), to keep it quick.

    bash -c 'source scripts/pg_cluster.sh && python bench/bench_events_pg.py'   # a throw-away server
    python bench/bench_events_pg.py --database-url postgresql://USER:PASSWORD@HOST/DB
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shoprec.config import Settings  # noqa: E402
from shoprec.db import redact  # noqa: E402
from shoprec.recommend.engine import RecommendEngine  # noqa: E402
from shoprec.recommend.events import EventRow, read_events  # noqa: E402
from shoprec.remote import Remote  # noqa: E402
from shoprec.service import Shoprec  # noqa: E402

from bench_store_real import pct as ms  # noqa: E402  (the same percentile-in-ms helper)

HM = Path(__file__).resolve().parents[2] / "shared" / "data" / "hm"
ROOT = Path(__file__).resolve().parents[1]


def subset(events: Path, catalog: Path, n: int, dest: Path) -> tuple[Path, Path]:
    """The first ``n`` events and the catalog rows they name, without photos (text-only index)."""
    lines = events.read_text().splitlines()[:n]
    wanted = {json.loads(line)["item_id"] for line in lines}
    rows = []
    for line in catalog.read_text().splitlines():
        row = json.loads(line)
        if row["id"] in wanted:
            row.pop("image", None)
            rows.append(json.dumps(row))
    (dest / "events.jsonl").write_text("\n".join(lines) + "\n")
    (dest / "catalog.jsonl").write_text("\n".join(rows) + "\n")
    return dest / "events.jsonl", dest / "catalog.jsonl"


def fresh_schema(url: str) -> tuple[str, str]:
    """A schema of its own on the server (dropped at the end); (url with that search_path, schema)."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def ingest_and_feed(settings: Settings, store, events: Path, users: int, batch: int) -> dict:
    """events/s through ingest_file and through batches of ``batch``; feed latency."""
    engine = RecommendEngine(store, settings)
    t = time.perf_counter()
    report = engine.ingest_file(events)
    whole = report.ingested / (time.perf_counter() - t)
    # again as POST-sized batches, each its own transaction (every event a new one: new event ids)
    rows = [r.event.model_copy(update={"event_id": f"again-{r.line}"}) for r in read_events(events)
            if isinstance(r, EventRow)]
    t = time.perf_counter()
    for start in range(0, len(rows), batch):
        engine.ingest(rows[start:start + batch])
    batched = len(rows) / (time.perf_counter() - t)
    shoppers = sorted({r["user_id"] for r in engine.events.scan("user_id")})
    rng = np.random.default_rng(0)
    sample = [shoppers[i] for i in rng.choice(len(shoppers), size=min(users, len(shoppers)), replace=False)]
    for u in sample[:20]:  # warm: state loaded, store pages cached
        engine.recommend_user(u, 10)
    times = []
    for u in sample:
        t = time.perf_counter()
        engine.recommend_user(u, 10)
        times.append(time.perf_counter() - t)
    engine.close()
    return {"ingested": report.ingested, "whole": whole, "batched": batched, "feed": times}


def _post_events(port: int, events: list[dict]) -> None:
    """POST /events; returns once acknowledged (200)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/events", method="POST", data=json.dumps(events).encode(),
                                     headers={"content-type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


def _serve(store: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "serve", "--port", str(port), "--store", str(store)],
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"worker did not start: {log.read_text()[-2000:]}")


def staleness(store: Path, tmp: Path, env: dict[str, str], items: list[str], trials: int, port0: int) -> list[float]:
    """Seconds from worker A's acknowledgement of a new shopper's event to worker B's changed feed."""
    procs = []
    try:
        for n in range(2):
            copy = tmp / f"worker-{port0 + n}"  # Qdrant Edge is single-process: one store copy each
            shutil.copytree(store, copy)
            procs.append(_serve(copy, port0 + n, env, tmp / f"worker-{port0 + n}.log"))
        a, worker_b = port0, Remote(f"http://127.0.0.1:{port0 + 1}")
        feed = lambda user: [r["id"] for r in worker_b.recommend(user, 10, None, False, {})["results"]]  # noqa: E731
        out = []
        for trial in range(trials):
            user = f"bench-{uuid.uuid4().hex[:8]}"
            cold = feed(user)
            event = {"user_id": user, "item_id": items[trial % len(items)], "type": "purchase",
                     "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _post_events(a, [event])
            acked = time.perf_counter()
            while feed(user) == cold:
                if time.perf_counter() - acked > 30:
                    raise SystemExit("worker B never saw worker A's event")
            out.append(time.perf_counter() - acked)
        return out
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=Path, default=HM / "events.jsonl")
    ap.add_argument("--catalog", type=Path, default=HM / "catalog.jsonl")
    ap.add_argument("--n-events", type=int, default=5000)
    ap.add_argument("--users", type=int, default=200, help="shoppers whose feed is timed")
    ap.add_argument("--batch", type=int, default=50, help="events per POST-sized transaction")
    ap.add_argument("--trials", type=int, default=40, help="staleness samples per backend")
    ap.add_argument("--refresh-interval", type=float, default=1.0, help="SHOPREC_REFRESH_INTERVAL_S of the workers")
    ap.add_argument("--database-url", default=os.environ.get("SHOPREC_BENCH_DATABASE_URL")
                    or os.environ.get("SHOPREC_TEST_DATABASE_URL"))
    args = ap.parse_args()
    if not args.events.is_file() or not args.catalog.is_file():
        print(f"skipped: H&M data not found ({args.events}, {args.catalog}; see ../shared/data/README.md)")
        return 0
    if not args.database_url:
        print("skipped: no PostgreSQL (--database-url, SHOPREC_BENCH_DATABASE_URL or SHOPREC_TEST_DATABASE_URL; "
              "`source scripts/pg_cluster.sh` starts a throw-away one)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-events-pg-"))
    pg_url, schema = fresh_schema(args.database_url)
    try:
        events, catalog = subset(args.events, args.catalog, args.n_events, tmp)
        base = Settings(store=tmp / "store", profile_vector="text", ranker="blend", ranker_retrain_events=0,
                        feed_cache_ttl_s=0, min_free_mb=0)
        t = time.perf_counter()
        svc = Shoprec(base)
        indexed = svc.index_catalog(catalog, progress=False).indexed
        print(f"store: {indexed} items of the first {args.n_events} events, text only, indexed in "
              f"{time.perf_counter() - t:.0f}s; PostgreSQL {redact(args.database_url)}; {os.cpu_count()} CPUs")
        backends = {"sqlite": base.model_copy(update={"events_db": tmp / "events.sqlite"}),
                    "postgres": base.model_copy(update={"database_url": pg_url})}
        results = {name: ingest_and_feed(s, svc.store, events, args.users, args.batch) for name, s in backends.items()}
        svc.close()
        print(f"\n{'backend':10} {'ingest ev/s (file, 1000/txn)':>29} {f'ingest ev/s ({args.batch}/txn)':>24} "
              f"{'feed p50 ms':>12} {'p95':>7} {'p99':>7}")
        for name, r in results.items():
            print(f"{name:10} {r['whole']:>29,.0f} {r['batched']:>24,.0f} {ms(r['feed'], 50):>12.1f} "
                  f"{ms(r['feed'], 95):>7.1f} {ms(r['feed'], 99):>7.1f}")
        items = [json.loads(line)["id"] for line in catalog.read_text().splitlines()]
        env = {"SHOPREC_PROFILE_VECTOR": "text", "SHOPREC_RANKER": "blend", "SHOPREC_RANKER_RETRAIN_EVENTS": "0",
               "SHOPREC_REFRESH_INTERVAL_S": str(args.refresh_interval), "SHOPREC_MIN_FREE_MB": "0"}
        print(f"\nstaleness: acknowledged on worker A -> changed feed on worker B, {args.trials} new shoppers, "
              f"SHOPREC_REFRESH_INTERVAL_S={args.refresh_interval:g}")
        print(f"{'backend':10} {'p50 s':>7} {'p99 s':>7} {'max s':>7}   (how B hears of it)")
        for n, (name, wake) in enumerate((("sqlite", "polling"), ("postgres", "LISTEN/NOTIFY + polling"))):
            where = ({"SHOPREC_EVENTS_DB": str(tmp / "events.sqlite")} if name == "sqlite"
                     else {"SHOPREC_DATABASE_URL": pg_url})
            lags = staleness(tmp / "store", tmp, {**env, **where}, items, args.trials, 18700 + 10 * n)
            print(f"{name:10} {np.percentile(lags, 50):>7.3f} {np.percentile(lags, 99):>7.3f} {max(lags):>7.3f}"
                  f"   ({wake})")
    finally:
        drop_schema(args.database_url, schema)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
