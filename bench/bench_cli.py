"""Wall time of `shoprec` commands as a user runs them (a fresh process each time).

In one run, with the same interpreter and machine load:
1. writes the first ``--n`` rows of a catalog (default: the H&M sample) to a temporary folder,
   with absolute photo paths, and times the first full ``shoprec index`` of it into a fresh store
   (the baseline of the re-index), then ingests the events of those items (untimed);
2. times ``python -c pass`` (interpreter start: the floor of every command);
3. times, median of ``--runs``, ``shoprec --help``, ``similar ITEM``, ``search TEXT``,
   ``recommend USER`` and ``complementary ITEM`` against that store, or against a copy of
   ``--store`` (copied sparse to a temporary folder: a query opens the store for writing);
4. times the no-op re-index of the same catalog (nothing changed: hashes only);
5. times the re-index after every photo got a new mtime but kept its bytes (a re-provisioned or
   freshly cloned photo folder): a hash pass over the photos, no store write. The photos are
   copies in the temporary folder, so the shared data's file times are never touched.

Prints each median beside its baseline and the target of issue 10. Timings on a shared machine
are noisy: run it more than once.

    python bench/bench_cli.py --n 1500 --store /work/stores/hm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HM = ROOT.parent / "shared" / "data" / "hm"

#: Targets of issue 10 (seconds of wall time on the 17k-item H&M store).
TARGETS = {"--help": 0.5, "similar": 1.0, "search": 2.5, "recommend": None, "complementary": None,
           "re-index (no-op)": 3.0, "re-index (photos touched)": None}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(), cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr or done.stdout}")
    return elapsed


def _median(cmd: list[str], runs: int) -> tuple[float, float]:
    times = [_time(cmd) for _ in range(runs)]
    return statistics.median(times), min(times)


def _shoprec(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoprec.cli", *args]


def _subset(catalog: Path, n: int, out: Path) -> list[str]:
    """The first n rows of ``catalog``, their local photos copied beside ``out``; their ids."""
    base = catalog.resolve().parent
    photos = out.parent / "photos"
    photos.mkdir(exist_ok=True)
    ids = []
    with catalog.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            if len(ids) == n:
                break
            row = json.loads(line)
            image = row.get("image")
            if image and not image.startswith(("http://", "https://")) and (base / image).is_file():
                copy = photos / f"{len(ids)}{Path(image).suffix}"
                shutil.copyfile(base / image, copy)
                row["image"] = str(copy)
            ids.append(str(row["id"]))
            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
    return ids


def _events_of(events: Path, ids: set[str], out: Path) -> str | None:
    """Events of these items written to ``out``; the most active user among them (or None)."""
    users: Counter[str] = Counter()
    with events.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            row = json.loads(line)
            if str(row.get("item_id")) in ids:
                users[str(row.get("user_id"))] += 1
                dst.write(line)
    return users.most_common(1)[0][0] if users else None


def _time_touched(catalog: Path, store: Path, photos: Path, run: int) -> float:
    """One re-index after every photo got a new mtime (same bytes); it must encode nothing."""
    stamp = time.time() + 60 * (run + 1)
    for photo in photos.iterdir():
        os.utime(photo, (stamp, stamp))
    started = time.perf_counter()
    done = subprocess.run(_shoprec("index", str(catalog), "--store", str(store), "--json"),
                          check=True, capture_output=True, text=True, env=_env(), cwd=ROOT)
    elapsed = time.perf_counter() - started
    report = json.loads(done.stdout)
    if report.get("indexed"):
        raise SystemExit(f"photos with new mtimes but the same bytes were encoded again: {report}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=HM / "catalog.jsonl")
    parser.add_argument("--events", type=Path, default=HM / "events.jsonl")
    parser.add_argument("--n", type=int, default=1500, help="Catalog rows to index (the head of the file).")
    parser.add_argument("--store", type=Path, help="Time the queries on a copy of this store instead.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--query", default="黑色T恤")
    parser.add_argument("--item", help="Item for similar/complementary [the catalog's first].")
    parser.add_argument("--user", help="User for recommend [the most active one of the subset's events].")
    args = parser.parse_args()
    if not args.catalog.is_file():
        print(f"catalog not found: {args.catalog} (the H&M sample lives in ../shared/data/hm)", file=sys.stderr)
        return 2

    rows: list[tuple[str, float, float, str, float]] = []  # name, median, min, baseline name, baseline
    with tempfile.TemporaryDirectory(prefix="shoprec-bench-cli-") as tmp:
        folder = Path(tmp)
        catalog, store = folder / "catalog.jsonl", folder / "store"
        ids = _subset(args.catalog, args.n, catalog)
        print(f"indexing {len(ids)} items into {store} (the re-index baseline) ...", flush=True)
        full = _time(_shoprec("index", str(catalog), "--store", str(store), "--json"))
        user = args.user
        if args.events.is_file():
            user = user or _events_of(args.events, set(ids), folder / "events.jsonl")
            _time(_shoprec("events", str(folder / "events.jsonl"), "--store", str(store), "--json"))

        query_store = store
        if args.store is not None:
            query_store = folder / "query-store"
            print(f"copying {args.store} to {query_store} ...", flush=True)
            if shutil.which("cp"):
                subprocess.run(["cp", "-a", "--sparse=always", str(args.store), str(query_store)], check=True)
            else:
                shutil.copytree(args.store, query_store)
        item = args.item or ids[0]
        user = user or "bench-user"
        at = ["--store", str(query_store), "--json"]

        interpreter, _ = _median([sys.executable, "-c", "pass"], args.runs)
        rows.append(("python -c pass", interpreter, interpreter, "", 0.0))
        commands = {
            "--help": _shoprec("--help"),
            "similar": _shoprec("similar", item, *at),
            "search": _shoprec("search", args.query, *at),
            "recommend": _shoprec("recommend", user, *at),
            "complementary": _shoprec("complementary", item, *at),
        }
        for name, cmd in commands.items():
            print(f"timing {name} ...", flush=True)
            median, fastest = _median(cmd, args.runs)
            rows.append((name, median, fastest, "python -c pass", interpreter))
        print("timing re-index (no-op) ...", flush=True)
        median, fastest = _median(_shoprec("index", str(catalog), "--store", str(store), "--json"), args.runs)
        rows.append(("re-index (no-op)", median, fastest, "first index", full))
        print("timing re-index (photos touched) ...", flush=True)
        touched = [_time_touched(catalog, store, folder / "photos", run) for run in range(args.runs)]
        rows.append(("re-index (photos touched)", statistics.median(touched), min(touched), "first index", full))

    where = args.store or f"the {len(ids)}-item store"
    print(f"\nwall seconds, median (min) of {args.runs} runs; queries on {where}; "
          f"item {item}, user {user}, query {args.query!r}")
    print(f"{'command':26s} {'median':>8s} {'min':>8s}   {'baseline':>24s}   target")
    for name, median, fastest, base_name, base in rows:
        baseline = f"{base_name} {base:.2f}" if base_name else ""
        target = TARGETS.get(name)
        print(f"{name:26s} {median:8.2f} {fastest:8.2f}   {baseline:>24s}   {'' if target is None else f'<= {target}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
