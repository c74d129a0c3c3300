"""The web page end to end: a real uvicorn server on loopback, driven by headless Chromium.

Uses Debian's chromium (never `playwright install`, which downloads browsers). Screenshots go to
a tmp folder and, if set, to $SHOPREC_SCREENSHOT_DIR so CI can keep them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app) -> Iterator[str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(indexed_demo) -> Iterator[str]:
    from shoprec.http import create_app

    yield from serve(create_app(service=indexed_demo))


@pytest.fixture(scope="module")
def api_key_server_url(indexed_demo) -> Iterator[str]:
    """A server with only SHOPREC_API_KEY: the catalog is public, shoppers are not."""
    from shoprec.http import create_app

    yield from serve(create_app(indexed_demo.settings.model_copy(update={"api_key": "page-key"}),
                                service=indexed_demo))


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """JavaScript errors of the page (a view that throws, or a blocked resource, fails the test)."""
    return []


@pytest.fixture(scope="module")
def page(request, page_errors):
    # Checked before the server fixture, so a skip costs no indexing.
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not installed at {CHROMIUM} (apt-get install chromium); browser test skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright not installed")
    server_url = request.getfixturevalue("server_url")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server_url)
        tab = context.new_page()
        tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
        # Console errors catch what does not throw, e.g. a Content-Security-Policy violation; a 404
        # answer the test asks for on purpose is logged as a failed resource and is fine.
        tab.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error"
               and not msg.text.startswith("Failed to load resource") else None)
        yield tab
        context.close()
        browser.close()


def wait_ready(page, route: str) -> None:
    """app.js sets body[data-ready] to the route once every shelf of the view has loaded."""
    page.wait_for_selector(f'body[data-ready="{route}"]', timeout=30_000)


def photos_loaded(page, selector: str) -> int:
    """How many <img> under ``selector`` have actually decoded pixels."""
    return page.eval_on_selector_all(selector, "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")


def screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("SHOPREC_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    assert path.is_file() and path.stat().st_size > 20_000, f"screenshot {path} looks empty"
    return path


def photo_of(item_id: str, shop_folder: Path) -> Path:
    return shop_folder / "images" / f"{item_id}.png"


def test_search_product_and_user_views(page, page_errors, tmp_path, demo_shop):
    indexed_demo_folder = demo_shop[0].parent
    page.goto("/")
    wait_ready(page, "home")
    assert page.locator("#feed .card").count() > 0

    page.fill("#q", "纯棉T恤")
    page.press("#q", "Enter")
    wait_ready(page, "search/" + "%E7%BA%AF%E6%A3%89T%E6%81%A4")
    cards = page.locator("#results .card")
    assert cards.count() >= 3
    tee_titles = [t for t in cards.locator(".card-title").all_inner_texts()[:5] if "T恤" in t or "T-shirt" in t]
    assert len(tee_titles) >= 3, cards.locator(".card-title").all_inner_texts()
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].some(i => i.naturalWidth > 0)")
    assert photos_loaded(page, "#results img") >= 3
    screenshot(page, tmp_path, "search")

    first_id = cards.first.get_attribute("data-id")
    cards.first.click()
    wait_ready(page, f"item/{first_id}")
    assert page.locator("#product").get_attribute("data-id") == first_id
    page.wait_for_function("() => document.querySelector('#product img.hero')?.naturalWidth > 0")
    for shelf in ("#similar", "#complementary"):
        shelf_cards = page.locator(f"{shelf} .card")
        assert shelf_cards.count() > 0, shelf
        reasons = shelf_cards.locator(".reason").all_inner_texts()
        assert reasons and all(r.strip() for r in reasons), shelf
    assert any("often bought with" in r or "goes with" in r.lower()
               for r in page.locator("#complementary .reason").all_inner_texts())
    page.wait_for_function("() => [...document.querySelectorAll('#similar img')].some(i => i.naturalWidth > 0)")
    screenshot(page, tmp_path, "product")

    page.fill("#user-id", "u001")
    page.press("#user-id", "Enter")
    wait_ready(page, "user/u001")
    assert page.locator("#feed .card").count() > 0
    assert page.locator("#history .event").count() > 0
    page.wait_for_function("() => [...document.querySelectorAll('#feed img')].some(i => i.naturalWidth > 0)")
    screenshot(page, tmp_path, "user")

    page.fill("#q", "")  # a photo alone (text and photo together would be fused)
    page.set_input_files("#image", str(photo_of("phone-blue", indexed_demo_folder)))
    page.click("#search-form button[type=submit]")
    wait_ready(page, "search-photo")
    by_photo = page.locator("#results .card-title").all_inner_texts()
    assert by_photo and ("手机" in by_photo[0] or "phone" in by_photo[0].lower()), by_photo

    page.goto("/#/item/no-such-item")
    wait_ready(page, "item/no-such-item")
    assert "not found" in page.locator("#view h1").inner_text().lower()
    assert page_errors == []


def test_with_only_an_api_key_the_shop_is_open_and_a_shopper_asks_for_the_key(page, page_errors, api_key_server_url):
    page.goto(api_key_server_url + "/")
    wait_ready(page, "home")
    assert page.locator("#feed .card").count() > 0  # trending: a catalog read, no key needed
    assert page.locator("#key-bar").is_hidden()

    page.goto(api_key_server_url + "/#/user/u001")
    wait_ready(page, "user/u001")
    assert page.locator("#key-bar").is_visible()
    assert page.locator("#feed .card").count() == 0 and page.locator("#history .event").count() == 0

    page.fill("#key", "page-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#feed .card")  # the view reloads with the key (kept for this tab)
    page.wait_for_selector("#history .event")
    assert page.locator("#key-bar").is_hidden()
    assert page_errors == []
