"""`shoprec eval` end to end on the generated demo shop: shoprec beside the baselines, one report."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from shoprec.cli import app


def test_eval_command_writes_report_with_shoprec_and_baselines(demo_shop, tmp_path) -> None:
    catalog, events = demo_shop
    out = tmp_path / "report"
    result = CliRunner().invoke(app, [
        "eval", "--catalog", str(catalog), "--events", str(events),
        "--protocols", "time:2026-03-12,replay:2026-03-12,leave-last,items-cold",
        "--k", "5,10", "--baselines", "popularity,popularity-7d,item-knn,content-knn", "--out", str(out),
        "--store", str(tmp_path / "store"),
    ])
    assert result.exit_code == 0, result.output
    numbers = json.loads((out / "results.json").read_text())
    # the first protocol keeps the historical shape: methods -> name -> next_purchase -> all -> ndcg@10
    assert set(numbers["methods"]) == {"shoprec", "popularity", "popularity-7d", "item-knn", "content-knn"}
    assert set(numbers["protocols"]) == {"time:2026-03-12", "replay:2026-03-12", "leave-last", "items-cold"}
    for block in numbers["protocols"].values():
        assert block["methods"]["shoprec"]["next_purchase"]["all"]["ndcg@10"] >= 0
    assert set(numbers["protocols"]["items-cold"]["methods"]) == {"shoprec", "content-knn", "random"}
    assert numbers["serving"]["space"] in ("text", "joint")
    shoprec = numbers["methods"]["shoprec"]
    # Demo shoppers keep buying the same pair of kinds: the real engine must beat chance by far.
    assert shoprec["next_purchase"]["all"]["recall@10"] > 0.5
    assert numbers["similar_items"]["joint"]["same_category_at_k"] > numbers["similar_items"]["same_category_chance"]
    report = (out / "report.md").read_text()
    assert "| shoprec |" in report and "Similar items" in report and "### items-cold" in report
    assert (out / "metric_vs_k.png").stat().st_size > 1000


def test_eval_rejects_a_bad_split(demo_shop, tmp_path) -> None:
    catalog, events = demo_shop
    result = CliRunner().invoke(app, ["eval", "--catalog", str(catalog), "--events", str(events),
                                      "--protocols", "yesterday", "--store", str(tmp_path / "s"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "unknown protocol 'yesterday'" in result.output
