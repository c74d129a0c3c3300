"""The `shoprec` command line on the demo shop: every query command, --json, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoprec.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_store(demo_shop, tmp_path_factory) -> tuple[Path, Path]:
    catalog, events = demo_shop
    store = tmp_path_factory.mktemp("cli-store")
    result = runner.invoke(app, ["index", str(catalog), "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 48 and summary["rejected"] == 0
    result = runner.invoke(app, ["events", str(events), "--store", str(store), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ingested"] == 600
    return store, catalog


def _json(args: list[str]) -> list[dict]:
    """The ranked items of a query command's JSON (which names its answer by rec_id, like HTTP)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    served = json.loads(result.stdout)
    assert len(served["rec_id"]) == 32 and [r["position"] for r in served["results"]] == list(
        range(1, len(served["results"]) + 1))
    return served["results"]


def test_query_commands_print_json_results(cli_store) -> None:
    store, catalog = cli_store
    s = ["--store", str(store), "--json"]
    similar = _json(["similar", "tshirt-red", "--k", "3", "--modality", "text", *s])
    assert len(similar) == 3 and {"id", "score", "title", "category", "price", "image_url", "reason"} <= set(similar[0])
    assert all(r["category"] == "T恤" for r in similar)

    found = _json(["search", "真皮手提包", "--k", "2", "--max-price", "900", *s])
    assert [r["category"] for r in found] == ["手提包", "手提包"] and all(r["price"] <= 900 for r in found)
    photo = catalog.parent / "images" / "mug-blue.png"
    by_photo = _json(["search", "--image", str(photo), "--k", "3", *s])
    assert by_photo[0]["id"] == "mug-blue"

    feed = _json(["recommend", "u002", "--k", "4", *s])
    assert len(feed) == 4
    cart = _json(["complementary", "--cart", "phone-black,tshirt-black", "--k", "4", *s])
    assert cart and not {"phone-black", "tshirt-black"} & {r["id"] for r in cart}


def test_cli_errors_are_clear(cli_store, tmp_path) -> None:
    store, _ = cli_store
    result = runner.invoke(app, ["similar", "no-such-item", "--store", str(store)])
    assert result.exit_code == 1 and "no-such-item" in result.output
    result = runner.invoke(app, ["similar", "tshirt-red", "--modality", "smell", "--store", str(store)])
    assert result.exit_code == 1 and "--modality" in result.output
    result = runner.invoke(app, ["search", "--store", str(store)])
    assert result.exit_code == 1 and "query" in result.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["search", "--image", str(bad), "--store", str(store)])
    assert result.exit_code == 1 and "bad.png" in result.output
    result = runner.invoke(app, ["index", str(tmp_path / "missing.jsonl"), "--store", str(tmp_path / "s")])
    assert result.exit_code == 1 and "catalog not found" in result.output


def test_delete_items(cli_store) -> None:
    store, _ = cli_store
    result = runner.invoke(app, ["delete", "mug-pink", "not-there", "--store", str(store)])
    assert result.exit_code == 0 and "deleted 1 of 2" in result.output
    result = runner.invoke(app, ["similar", "mug-pink", "--store", str(store)])
    assert result.exit_code == 1 and "mug-pink" in result.output


def test_forget_user(cli_store) -> None:
    store, _ = cli_store
    result = runner.invoke(app, ["forget", "u003", "--store", str(store)])
    assert result.exit_code == 0 and "forgot u003" in result.output
    result = runner.invoke(app, ["forget", "u003", "--store", str(store)])
    assert "no data for u003" in result.output


def test_demo_builds_indexes_and_answers(tmp_path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "48 indexed" in result.output and "600 events ingested, 0 rejected" in result.output
    for section in ("search: 纯棉T恤", "search by photo", "similar to handbag-red", "goes with phone-black",
                    "for a new visitor"):
        assert section in result.output
    assert "mug-blue" in result.output and "often bought" in result.output


def test_report_counts_what_was_shown_and_clicked(cli_store, tmp_path) -> None:
    store, _ = cli_store
    s = ["--store", str(store)]
    served = json.loads(runner.invoke(app, ["recommend", "u003", "--k", "3", *s, "--json"]).stdout)
    shown = [{"user_id": "u003", "item_id": r["id"], "type": "impression", "rec_id": served["rec_id"],
              "ts": "2026-03-20T10:00:00Z"} for r in served["results"]]
    click = {**shown[0], "type": "click", "ts": "2026-03-20T10:01:00Z"}
    events = tmp_path / "online.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [*shown, click]) + "\n")
    result = runner.invoke(app, ["events", str(events), *s, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ingested"] == 4, result.output
    assert json.loads(result.stdout)["attributed"] == 1  # the click names the list it came from

    report = json.loads(runner.invoke(app, ["report", *s, "--json"]).stdout)
    feed = next(g for g in report["groups"] if g["surface"] == "feed")
    assert (feed["lists"], feed["items_shown"], feed["clicks"], feed["ctr"]["value"]) == (1, 3, 1, 1.0)
    later = json.loads(runner.invoke(app, ["report", "--since", "2026-03-21", *s, "--json"]).stdout)
    assert later["groups"] == []
    table = runner.invoke(app, ["report", *s])
    assert table.exit_code == 0 and "verdict: no experiment" in table.output and "│ feed" in table.output
    bad = runner.invoke(app, ["report", "--since", "last week", *s])
    assert bad.exit_code == 1 and "--since" in bad.output
