"""What does HTTP add? Load-test `shoprec serve` on loopback beside in-process Shoprec calls.

1. in-process: ``Shoprec.similar`` and ``Shoprec.recommend`` called directly, one at a time,
   with the serving caches off, p50/p99 over the same item and user ids the load test uses (the
   baseline: what the recommender itself costs);
2. HTTP: ``shoprec serve`` started as a child process on 127.0.0.1 (the embedded store is
   single-process, so the bench closes its own handle first), then a few threads, each with one
   keep-alive connection, hammer the endpoints for a bounded time and count; requests/s and
   p50/p99 per workload:
   - ``similar``: product pages of ``--ids`` items, cycled (a page is asked for again and again);
   - ``recommendations``: the feeds of ``--ids`` shoppers, cycled (reloads within the cache TTL);
   - ``recommendations, first visit``: shoppers never asked for before, each once, so every
     feed is computed (candidates, features, ranker): the cost the feed cache does not hide.
   The server is measured once its start-up warm-up has finished (``/health`` says ``warm``): the
   feed's state is loaded and the neighbours of every item shoppers touched are cached, so a
   first visit computes candidates, features and ranker but asks HNSW for nothing it saw before.
   The client is the standard library's ``http.client``: client and server share the machine's
   cores, and httpx spent about twice the CPU per request, CPU the server then lacked.

    python bench/bench_http.py                         # demo shop (built + indexed in a temp dir), < 1 min
    python bench/bench_http.py --store ./hm-store --seconds 20 --concurrency 8   # an existing store

Loopback only: the server binds 127.0.0.1 and the bench talks to nothing else.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import shoprec  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import http.client

import httpx

from shoprec.config import Settings
from shoprec.service import Shoprec


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q / 100 * (len(sorted_ms) - 1))))]


def p50_p99(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return percentile(ordered, 50), percentile(ordered, 99)


# ---------------------------------------------------------------- workload
def demo_store(folder: Path) -> Path:
    from shoprec.demo_data import build_demo_catalog

    catalog, events = build_demo_catalog(folder)
    service = Shoprec(Settings(store=folder / "store"))
    try:
        print(service.index_catalog(catalog, progress=False).summary())
        service.ingest_events_file(events)
    finally:
        service.close()
    return folder / "store"


def sample_ids(service: Shoprec, n: int, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Item ids from the store and user ids from the event log (users with history): the cycled
    ones, and up to ``4 n`` others for first visits."""
    items = [hit.item_id for hit in service.store.scroll(fields=["item_id"])]
    users = list(dict.fromkeys(row["user_id"] for row in service.engine.events.scan("user_id")))
    if not items:
        sys.exit("the store holds no items")
    rng.shuffle(items)
    rng.shuffle(users)
    return items[:n], (users[:n] or ["new-visitor"]), users[n:5 * n]


def in_process(service: Shoprec, items: list[str], users: list[str], k: int, n: int) -> dict[str, tuple[float, float]]:
    calls: dict[str, Callable[[int], object]] = {
        "similar": lambda i: service.similar(items[i % len(items)], k=k),
        "recommendations": lambda i: service.recommend(users[i % len(users)], k=k),
    }
    out = {}
    for name, call in calls.items():
        for i in range(3):
            call(i)  # warm caches (behaviour model, HNSW pages)
        samples = []
        for i in range(n):
            start = time.perf_counter()
            call(i)
            samples.append((time.perf_counter() - start) * 1000)
        out[name] = p50_p99(samples)
    return out


# ---------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "shoprec.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--store", str(store)]
    env = {**os.environ, "SHOPREC_API_KEY": "", "SHOPREC_READ_KEY": ""}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early:\n{proc.stderr.read() if proc.stderr else ''}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            # measure the steady state: after the start-up warm-up, which shares the same cores
            if health.status_code == 200 and health.json().get("warm", True):
                print(f"server healthy and warmed up {time.monotonic() - started:.1f}s after start")
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    sys.exit("server did not become healthy within 120 s")


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def load(port: int, paths: list[str], concurrency: int, seconds: float, max_requests: int) -> LoadResult:
    """Threads issue GETs round-robin over ``paths`` until the time or request budget is spent."""
    result = LoadResult()
    lock = threading.Lock()
    issued = 0
    stop_at = time.monotonic() + seconds

    def worker(offset: int) -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset
        try:
            while time.monotonic() < stop_at:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                start = time.perf_counter()
                try:
                    conn.request("GET", paths[i % len(paths)])
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    if ok:
                        result.latencies_ms.append(elapsed)
                    else:
                        result.errors += 1
                i += concurrency
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None, help="existing store folder (default: the demo shop)")
    ap.add_argument("--seconds", type=float, default=8.0, help="load per endpoint, seconds")
    ap.add_argument("--max-requests", type=int, default=50_000, help="load per endpoint, at most this many requests")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads")
    ap.add_argument("--queries", type=int, default=200, help="in-process calls per endpoint")
    ap.add_argument("--ids", type=int, default=200, help="distinct item / user ids to cycle through")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="shoprec-bench-http-"))
        store = demo_store(tmp)
    elif not store.is_dir():
        sys.exit(f"store folder not found: {store}")
    try:
        # the baseline computes every answer: serving caches off
        service = Shoprec(Settings(store=store, feed_cache_ttl_s=0, similar_cache_size=0, neighbour_cache_size=0))
        try:
            items, users, first_visits = sample_ids(service, args.ids, random.Random(args.seed))
            print(f"store {store}: {service.count()} items; {len(items)} item ids, {len(users)} user ids sampled")
            baseline = in_process(service, items, users, args.k, args.queries)
        finally:
            service.close()  # the server process opens the store next

        port = free_port()
        server = start_server(store, port)
        try:
            workloads = {
                "similar": [f"/items/{i}/similar?k={args.k}" for i in items],
                "recommendations": [f"/users/{u}/recommendations?k={args.k}" for u in users],
            }
            rows = []
            for name, paths in workloads.items():
                load(port, paths, args.concurrency, 60.0, len(paths))  # one pass: every answer once
                rows.append((name, load(port, paths, args.concurrency, args.seconds, args.max_requests)))
            if first_visits:
                paths = [f"/users/{u}/recommendations?k={args.k}" for u in first_visits]
                rows.append(("recommendations, first visit",
                             load(port, paths, args.concurrency, args.seconds, len(paths))))
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nconcurrency {args.concurrency}, k={args.k}, {os.cpu_count()} CPUs (client and server share them)")
    header = ("workload", "in-proc p50", "p99", "http req/s", "http p50", "p99", "n", "errors")
    widths = (30, 12, 8, 12, 10, 8, 7, 8)
    print(header[0].ljust(widths[0]) + "".join(h.rjust(w) for h, w in zip(header[1:], widths[1:], strict=True)))
    for name, res in rows:
        ip50, ip99 = baseline[name.split(",")[0]]
        hp50, hp99 = p50_p99(res.latencies_ms)
        print(f"{name:<30}{ip50:>10.1f}ms{ip99:>6.1f}ms{res.rps:>12.0f}{hp50:>8.1f}ms{hp99:>6.1f}ms"
              f"{len(res.latencies_ms):>7}{res.errors:>8}")


if __name__ == "__main__":
    main()
