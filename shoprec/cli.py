"""The `shoprec` command line: thin typer commands over ``shoprec.service.Shoprec``.

Start-up time is part of the interface: each command imports what it needs inside its body
(the service, encoders, the recommenders, pydantic settings), so `shoprec --help` loads typer
and rich only and `shoprec similar` answers in about a second on a 17k-item store.
tests/test_cli_fast.py fails when a heavy library is imported on these paths.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from installed packages, never a hub

import click
import typer
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

if TYPE_CHECKING:
    from shoprec.config import Settings
    from shoprec.indexing.store import ItemFilter
    from shoprec.remote import Remote
    from shoprec.service import Shoprec

console = Console()
err_console = Console(stderr=True)


class _Commands(TyperGroup):
    """Storage faults (full or read-only disk, a store held by a running server), errors of a
    server queried with --url and bad SHOPREC_* settings are the user's to fix: every command
    ends them with one line on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from pydantic import ValidationError

        from shoprec.errors import RemoteError
        from shoprec.storage import StoreError

        try:
            return super().invoke(ctx)
        except (StoreError, RemoteError) as err:
            err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(code=1) from None
        except ValidationError as err:
            if err.title != "Settings":
                raise
            # a bad SHOPREC_* variable: name it, as the catalog names a bad field
            problems = "; ".join(f"SHOPREC_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                                 for e in err.errors())
            err_console.print(f"[red]error:[/red] invalid configuration: {escape(problems)}", soft_wrap=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(help="shoprec: multimodal product recommendations on Qdrant.", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=_Commands)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Embedded store folder (default: ./shoprec-data).")]
KOpt = Annotated[int, typer.Option("--k", min=1, max=1000, help="How many results.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CategoryOpt = Annotated[Optional[list[str]], typer.Option("--category", help="Only these categories.")]
MinPriceOpt = Annotated[Optional[float], typer.Option("--min-price")]
MaxPriceOpt = Annotated[Optional[float], typer.Option("--max-price")]
InStockOpt = Annotated[Optional[bool], typer.Option("--in-stock/--any-stock", help="Only items in stock.")]
UrlOpt = Annotated[Optional[str], typer.Option(
    "--url", envvar="SHOPREC_URL", show_envvar=True,
    help="Ask the `shoprec serve` running at this address (http://HOST:PORT) instead of opening the store "
         "(which that server holds).")]
ApiKeyOpt = Annotated[Optional[str], typer.Option(
    "--api-key", envvar="SHOPREC_API_KEY", show_envvar=True, show_default=False,
    help="The server's API key, for --url.")]


def _settings(store: Path | None) -> Settings:
    from shoprec.config import Settings  # pydantic-settings: not needed for --help

    return Settings(store=store) if store else Settings()


def _service(store: Path | None) -> Shoprec:
    # each part of the service loads when the command first uses it
    from shoprec.service import Shoprec

    return Shoprec(_settings(store))


def _remote(ctx: click.Context, url: str | None, api_key: str | None, store: Path | None) -> Remote | None:
    """The server to ask, or None to open the store. SHOPREC_URL from the environment gives way
    to an explicit --store; --url and --store together are a mistake."""
    if not url:
        return None
    if store is not None:
        if ctx.get_parameter_source("url") is ParameterSource.ENVIRONMENT:
            return None
        _fail("--url and --store exclude each other: a query goes to the server or to the store")
    from shoprec.remote import Remote

    return Remote(url, api_key)


def _filter(category, min_price, max_price, in_stock) -> ItemFilter | None:
    from shoprec.indexing.store import ItemFilter

    flt = ItemFilter(categories=category or None, min_price=min_price, max_price=max_price, in_stock=in_stock)
    return None if flt.is_empty() else flt


def _filter_query(category, min_price, max_price, in_stock) -> dict[str, Any]:
    from shoprec.remote import filter_query

    return filter_query(category, min_price, max_price, in_stock)


def _print(answer: Any, as_json: bool, title: str) -> None:
    """A served answer (shoprec.results.Served: JSON as the HTTP API answers it, rec_id included),
    a server's answer body (--url), or a plain list of recommendations (the demo's tour)."""
    served = not isinstance(answer, (list, dict))
    if as_json:
        body = answer.model_dump() if served else answer if isinstance(answer, dict) else [
            r if isinstance(r, dict) else r.model_dump() for r in answer]
        typer.echo(json.dumps(body, ensure_ascii=False, indent=1))
        return
    if served:
        results, caption = answer.results, f"rec_id {answer.rec_id} · variant {answer.variant}"
    elif isinstance(answer, dict):
        results, caption = answer.get("results", []), f"rec_id {answer.get('rec_id')} · variant {answer.get('variant')}"
    else:
        results, caption = answer, None
    rows = [r if isinstance(r, dict) else r.model_dump() for r in results]
    table = Table(title=title, caption=caption)
    for column in ("#", "id", "score", "title", "category", "price", "reason"):
        table.add_column(column)
    for rank, r in enumerate(rows, 1):
        table.add_row(str(rank), r["id"], f"{r['score']:.3f}", r["title"], r.get("category") or "",
                      "" if r.get("price") is None else f"{r['price']:g}", r.get("reason") or "")
    console.print(table)


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # one line, even in a pipe
    raise typer.Exit(code=1)


@app.command()
def index(
    catalog: Annotated[Path, typer.Argument(help="Catalog file (.jsonl or .csv).")],
    store: StoreOpt = None,
    delete_missing: Annotated[bool, typer.Option(help="Delete stored items absent from this catalog.")] = False,
    errors: Annotated[Optional[Path], typer.Option(help="Where to write per-line problems [STORE/index-errors.jsonl].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index (or re-index) a catalog: unchanged items are skipped, changed ones re-encoded."""
    with _service(store) as service:
        try:
            report = service.index_catalog(catalog, delete_missing=delete_missing, progress=not as_json)
        except (FileNotFoundError, ValueError) as err:
            _fail(str(err))
        details = errors or service.settings.store / "index-errors.jsonl"
        report.write_details(details)
        if as_json:
            typer.echo(json.dumps({"indexed": report.indexed, "unchanged": report.unchanged, "rejected": report.failed,
                                   "image_errors": len(report.image_errors), "deleted": report.deleted,
                                   "seconds": round(report.seconds, 2), "joint": report.joint_metrics,
                                   "serving_space": report.serving_space,
                                   "errors_file": str(details)}))
        else:
            console.print(report.summary())
            if report.joint_metrics:
                console.print(f"joint space: {report.joint_metrics}")
            if report.serving_space:
                console.print(f"the feed uses the {report.serving_space['vector']} space: "
                              f"{report.serving_space['reason']}")
            for err in (report.row_errors + report.image_errors)[:10]:
                err_console.print(f"  [yellow]{err}[/yellow]")
            if report.row_errors or report.image_errors:
                err_console.print(f"all problems: {details}")


@app.command()
def similar(
    ctx: typer.Context,
    item_id: str,
    k: KOpt = 10,
    modality: Annotated[str, typer.Option(help="text | image | joint | colour")] = "joint",
    store: StoreOpt = None, as_json: JsonOpt = False,
    category: CategoryOpt = None, min_price: MinPriceOpt = None, max_price: MaxPriceOpt = None, in_stock: InStockOpt = None,
    url: UrlOpt = None, api_key: ApiKeyOpt = None,
) -> None:
    """Products similar to ITEM_ID."""
    from shoprec.errors import UnknownItem

    if modality not in ("text", "image", "joint", "colour"):
        _fail(f"--modality must be text, image, joint or colour, not {modality!r}")
    title = f"similar to {item_id} ({modality})"
    remote = _remote(ctx, url, api_key, store)
    if remote is not None:
        _print(remote.similar(item_id, k, modality, _filter_query(category, min_price, max_price, in_stock)),
               as_json, title)
        return
    with _service(store) as service:
        try:
            flt = _filter(category, min_price, max_price, in_stock)
            results = service.serve("similar", None, lambda o: service.similar(
                item_id, k=k, modality=modality, flt=flt, overrides=o))
        except UnknownItem as err:
            _fail(str(err))
        _print(results, as_json, title)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[Optional[str], typer.Argument(help="Text query (any language).")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Search by a photo.")] = None,
    k: KOpt = 10, store: StoreOpt = None, as_json: JsonOpt = False,
    category: CategoryOpt = None, min_price: MinPriceOpt = None, max_price: MaxPriceOpt = None, in_stock: InStockOpt = None,
    url: UrlOpt = None, api_key: ApiKeyOpt = None,
) -> None:
    """Search by text, by image, or both."""
    if not query and image is None:
        _fail("give a text query or --image PATH")
    if image is not None and not image.is_file():
        _fail(f"image not found: {image}")
    title = f"search {query or image}"
    remote = _remote(ctx, url, api_key, store)
    if remote is not None:
        _print(remote.search(query, image, k, _filter_query(category, min_price, max_price, in_stock)), as_json, title)
        return
    from shoprec.images import ImageError

    with _service(store) as service:
        data = image.read_bytes() if image is not None else None
        try:
            flt = _filter(category, min_price, max_price, in_stock)
            results = service.serve("search", None, lambda o: service.search(text=query, image=data, k=k, flt=flt))
        except ImageError as err:
            _fail(f"{image}: {err}")
        _print(results, as_json, title)


@app.command()
def events(
    file: Annotated[Path, typer.Argument(help="Events file (.jsonl or .csv).")],
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Ingest behaviour events; bad lines are reported, the rest ingested.

    Lines of this file (by content) ingested before are skipped, so running it twice, or again
    after lines were appended, counts nothing twice; events whose event_id is stored are skipped.
    """
    with _service(store) as service:
        try:
            report = service.ingest_events_file(file)
        except (FileNotFoundError, ValueError) as err:
            _fail(str(err))
        if as_json:
            typer.echo(json.dumps({"ingested": report.ingested, "skipped_lines": report.skipped_lines,
                                   "duplicates": report.duplicates, "attributed": report.attributed,
                                   "errors": [{"line": e.line, "reason": e.reason} for e in report.errors]}))
        else:
            console.print(f"{report.ingested} events ingested, {len(report.errors)} rejected")
            if report.skipped_lines:
                console.print(f"{report.skipped_lines} lines skipped: this file was ingested up to there before")
            if report.duplicates:
                console.print(f"{report.duplicates} events skipped: their event_id was already ingested")
            if report.attributed:
                console.print(f"{report.attributed} clicks, carts or purchases credited to a recommendation")
            for err in report.errors[:10]:
                err_console.print(f"  [yellow]line {err.line}: {escape(err.reason)}[/yellow]")


@app.command()
def users(
    file: Annotated[Path, typer.Argument(help="Users file (.jsonl, .csv or .tsv): user_id plus attributes such as age, "
                                             "gender, region.")],
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Store registration attributes: new users get what shoppers of their segment buy."""
    if not file.is_file():
        _fail(f"file not found: {file}")
    with _service(store) as service:
        try:
            stored, errors = service.engine.add_users_file(file)
        except ValueError as err:  # an unsupported format (.jsonl, .csv or .tsv)
            _fail(str(err))
        if as_json:
            typer.echo(json.dumps({"stored": stored, "errors": [{"line": e.line, "reason": e.reason} for e in errors]}))
        else:
            console.print(f"{stored} users stored, {len(errors)} rejected")
            for err in errors[:10]:
                err_console.print(f"  [yellow]{escape(str(err))}[/yellow]")


@app.command()
def train(store: StoreOpt = None, as_json: JsonOpt = False,
          label_days: Annotated[float, typer.Option(help="Days of each self-split label window.")] = 28.0) -> None:
    """Learn the feed's ranker from this shop's events (time self-split); it serves only if it
    beats the hand-tuned blend on its own validation window."""
    from shoprec.recommend.ranking.training import TrainSettings

    with _service(store) as service:
        report = service.engine.train_ranker(TrainSettings(label_days=label_days), progress=not as_json)
        if as_json:
            typer.echo(json.dumps({"serves": report.serves, "reason": report.reason, "card": report.card}))
            return
        console.print(("[green]learned ranker serves[/green]: " if report.serves else
                       "[yellow]the hand-tuned blend keeps serving[/yellow]: ") + report.reason)
        for feature, gain in list((report.card.get("importances") or {}).items())[:12]:
            console.print(f"  {feature:24s} {gain:.3f}")


@app.command()
def recommend(
    ctx: typer.Context,
    user_id: str, k: KOpt = 10,
    context_item: Annotated[Optional[str], typer.Option(help="Item the user is looking at.")] = None,
    exclude_purchased: Annotated[bool, typer.Option(
        help="Never offer items the user bought (by default the ranker decides whether buying again fits "
             "this shop).")] = False,
    store: StoreOpt = None, as_json: JsonOpt = False,
    category: CategoryOpt = None, min_price: MinPriceOpt = None, max_price: MaxPriceOpt = None, in_stock: InStockOpt = None,
    url: UrlOpt = None, api_key: ApiKeyOpt = None,
) -> None:
    """Personalised feed for USER_ID (new users get their segment's favourites / trending / context)."""
    title = f"for {user_id}"
    remote = _remote(ctx, url, api_key, store)
    if remote is not None:
        _print(remote.recommend(user_id, k, context_item, exclude_purchased,
                                _filter_query(category, min_price, max_price, in_stock)), as_json, title)
        return
    from shoprec.errors import UnknownItem

    with _service(store) as service:
        flt = _filter(category, min_price, max_price, in_stock)
        results = service.serve("feed", user_id, lambda o: service.recommend(
            user_id, k=k, context_item=context_item, exclude_purchased=exclude_purchased, flt=flt, overrides=o))
        _print(results, as_json, title)


@app.command()
def complementary(
    ctx: typer.Context,
    item_id: Annotated[Optional[str], typer.Argument()] = None,
    cart: Annotated[Optional[str], typer.Option(help="Comma-separated item ids in the cart.")] = None,
    k: KOpt = 10, store: StoreOpt = None, as_json: JsonOpt = False,
    category: CategoryOpt = None, min_price: MinPriceOpt = None, max_price: MaxPriceOpt = None, in_stock: InStockOpt = None,
    url: UrlOpt = None, api_key: ApiKeyOpt = None,
) -> None:
    """Items bought with ITEM_ID (or with the whole --cart)."""
    from shoprec.errors import UnknownItem

    ids = [i.strip() for i in (cart or "").split(",") if i.strip()] + ([item_id] if item_id else [])
    if not ids:
        _fail("give an ITEM_ID or --cart ID,ID")
    title = f"goes with {', '.join(ids)}"
    remote = _remote(ctx, url, api_key, store)
    if remote is not None:
        _print(remote.complementary(list(dict.fromkeys(ids)), k, _filter_query(category, min_price, max_price, in_stock)),
               as_json, title)
        return
    with _service(store) as service:
        try:
            flt = _filter(category, min_price, max_price, in_stock)
            results = service.serve("cart" if cart else "complementary", None,
                                    lambda o: service.complementary(ids, k=k, flt=flt))
        except UnknownItem as err:
            _fail(str(err))
        _print(results, as_json, title)


@app.command()
def delete(
    item_ids: Annotated[list[str], typer.Argument(help="Item ids to remove from the index.")],
    store: StoreOpt = None,
) -> None:
    """Remove items from the index (they stop being recommended at once)."""
    with _service(store) as service:
        removed = service.delete_items(item_ids)
    console.print(f"deleted {removed} of {len(item_ids)} item(s)")
    if removed < len(item_ids):
        err_console.print("[yellow]ids not in the index were skipped[/yellow]")


@app.command()
def forget(user_id: str, store: StoreOpt = None) -> None:
    """Forget a user: their events and vector go, and stop influencing others."""
    with _service(store) as service:
        removed = service.forget_user(user_id)
        console.print(f"forgot {user_id}" if removed else f"no data for {user_id}")


@app.command()
def stats(store: StoreOpt = None) -> None:
    """Index size and event counts."""
    with _service(store) as service:
        typer.echo(json.dumps(service.stats(), indent=1))


@app.command()
def report(
    since: Annotated[Optional[str], typer.Option(help="Only lists first shown on or after this UTC day (YYYY-MM-DD).")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Which experiment [default: the running one, else the latest].")] = None,
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Online measures per surface x variant: CTR, add-to-cart and conversion rates (95% intervals),
    credited revenue, items per order, coverage, and the A/B test's verdict."""
    from datetime import date

    from shoprec.online.experiments import ExperimentError
    from shoprec.online.report import tables

    if since is not None:
        try:
            since = date.fromisoformat(since).isoformat()
        except ValueError:
            _fail(f"--since must be a date YYYY-MM-DD, not {since!r}")
    with _service(store) as service:
        try:
            data = service.online_stats(experiment, since)
        except ExperimentError as err:
            _fail(str(err))
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    for table in tables(data):
        console.print(table)
    console.print(f"[bold]verdict[/bold]: {escape(data['verdict']['text'])}")
    console.print(f"[dim]{escape(data['method'])}[/dim]")


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where to write the sample shop (its store goes to FOLDER/store).")] = Path("./shoprec-demo"),
    serve: Annotated[bool, typer.Option(help="Serve the web page afterwards.")] = False,
    port: int = 8000,
) -> None:
    """Build a small bilingual sample shop, index it, replay behaviour and answer queries."""
    from shoprec.demo_data import build_demo_catalog
    from shoprec.service import Shoprec

    catalog, events_file = build_demo_catalog(folder)
    store = folder / "store"
    shutil.rmtree(store, ignore_errors=True)  # a demo starts clean: replayed events would double up
    with Shoprec(_settings(store)) as service:
        console.rule("index")
        console.print(service.index_catalog(catalog).summary())
        console.rule("events")
        report = service.ingest_events_file(events_file)
        console.print(f"{report.ingested} events ingested, {len(report.errors)} rejected")
        _print(service.search("纯棉T恤", k=5), False, "search: 纯棉T恤")
        _print(service.search("running shoes", k=5), False, "search: running shoes")
        photo = folder / "images" / "mug-blue.png"
        _print(service.search(image=photo.read_bytes(), k=5), False, f"search by photo: {photo}")
        _print(service.similar("handbag-red", k=5), False, "similar to handbag-red")
        _print(service.complementary(["phone-black"], k=5), False, "goes with phone-black")
        _print(service.recommend("u001", k=5), False, "for u001 (a returning shopper)")
        _print(service.recommend("new-visitor", k=5), False, "for a new visitor")
    if serve:
        console.print(f"serving the web page on http://127.0.0.1:{port}")
        _serve_app(_settings(store), "127.0.0.1", port)


@app.command(name="eval")
def evaluate_command(
    catalog: Annotated[Path, typer.Option(help="Catalog file.")] = Path("../shared/data/hm/catalog.jsonl"),
    events_file: Annotated[Path, typer.Option("--events", help="Events file (purchases are scored).")] = Path("../shared/data/hm/events.jsonl"),
    protocols: Annotated[str, typer.Option(
        "--protocols", "--split",
        help="Comma-separated: time:YYYY-MM-DD (train before, test from), replay:YYYY-MM-DD (each day predicted "
             "from all before it), leave-last, items-cold (20% of items held out).")] = "time:2020-06-01",
    k: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs.")] = "10,20,50",
    baselines: Annotated[str, typer.Option(help="Comma-separated baselines to run beside shoprec.")] = (
        "popularity,recent-popularity,popularity-7d,item-knn,als,lightfm,content-knn,ncf"),
    features: Annotated[str, typer.Option(help="Content features for hybrid baselines: shoprec | stand-in | none.")] = "shoprec",
    out: Annotated[Path, typer.Option(help="Report folder (report.md, results.json, plots).")] = Path("reports/eval"),
    seed: int = 0,
    users_file: Annotated[Optional[Path], typer.Option("--users", help="User attributes (CSV/JSONL) for the "
                                                                      "segment cold start.")] = None,
    ncf_rerank: Annotated[bool, typer.Option(help="Also run shoprec reranked by NCF (doubles run time).")] = False,
    leave_last_repeats: Annotated[bool, typer.Option(
        help="leave-last: keep history items in the lists and repeat purchases as targets.")] = False,
    replay_days: Annotated[Optional[int], typer.Option(help="replay: evaluate only the first N days.")] = None,
    store: StoreOpt = None,
) -> None:
    """Offline evaluation of shoprec against baselines, every protocol side by side, with a report."""
    from shoprec.evaluation.run import EvalOptions, run_evaluation

    if features not in ("shoprec", "stand-in", "none"):
        _fail(f"--features must be shoprec, stand-in or none, not {features!r}")
    try:
        ks = tuple(int(x) for x in k.split(",") if x.strip())
    except ValueError:
        _fail(f"--k must be comma-separated integers, not {k!r}")
    for path in (catalog, events_file, *([users_file] if users_file else [])):
        if not path.is_file():
            _fail(f"file not found: {path}")
    options = EvalOptions(catalog=catalog, events=events_file, out=out,
                          protocols=[p.strip() for p in protocols.split(",") if p.strip()], ks=ks,
                          baselines=[b.strip() for b in baselines.split(",") if b.strip()],
                          features=features, seed=seed, users=users_file, ncf_rerank=ncf_rerank,
                          leave_last_repeats=leave_last_repeats, replay_days=replay_days)
    settings = _settings(store)
    try:
        report, _ = run_evaluation(options, settings)
    except (ValueError, KeyError) as err:
        _fail(str(err))
    console.print(f"report: {report}")


def _serve_app(settings: Settings, host: str, port: int, access_log: bool = False) -> None:
    """Open the store before uvicorn starts, so a held, full or read-only store is one line here
    rather than a traceback inside the server's start-up."""
    import logging

    import uvicorn

    from shoprec.http.app import create_app
    from shoprec.recommend.ranked_feed import single_threaded_blas
    from shoprec.service import Shoprec

    single_threaded_blas.hold()  # a server's matrix products are small (ranked_feed.py)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    # While PostgreSQL is away the pool says so in three lines per reconnect attempt; the engine says
    # it once (RecommendEngine.refresh) and every request that needs it answers 503 with the reason.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    service = Shoprec(settings)
    try:
        service.engine.open()  # the store and events database now: a StoreError is one line (_Commands)
        err_console.print(f"store {settings.store}: {service.count()} items; serving on http://{host}:{port}")
        uvicorn.run(create_app(settings, service=service), host=host, port=port, workers=1, access_log=access_log)
    finally:
        service.close()


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, store: StoreOpt = None,
          access_log: Annotated[bool, typer.Option(help="Log every request (costs ~5% of a cached answer's time; "
                                                      "/metrics counts requests either way).")] = False) -> None:
    """Run the HTTP API and web page (one process: the embedded store is single-writer)."""
    _serve_app(_settings(store), host, port, access_log)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
