"""``GET /ui``: the customer-360 page, driven in a real headless Chromium against a real server.

The browser is the system's Chromium (Debian's ``chromium`` package) driven by Playwright's
Python API through ``executable_path``: no browser download. The tests are skipped, saying so,
only where no Chromium binary is installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from servingkit import READ, get_json, serve

from recsys.config import Settings
from serving.app import create_app

CHROMIUM = os.environ.get("RECSYS_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).is_file()
needs_chromium = pytest.mark.skipif(
    not HAS_CHROMIUM,
    reason=f"no Chromium binary at {CHROMIUM} (install Debian's chromium package, or set "
    "RECSYS_TEST_CHROMIUM)",
)
DASH = "\u2013"
CUSTOMER = "loyal-1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not HAS_CHROMIUM:
        pytest.skip(f"no Chromium binary at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_server(offers_settings: Settings) -> Iterator[str]:
    """The offers bundle served without API keys: loopback clients only (the browser is one)."""
    with serve(create_app(offers_settings.model_copy(update={"api_keys": {}}))) as base:
        yield base


def fixed(value: float | None, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def field(page: Page, scope: str, name: str) -> str:
    return page.locator(f'{scope} [data-field="{name}"]').inner_text().strip()


def look_up(page: Page, customer_id: str) -> None:
    page.fill("#customer-id", customer_id)
    page.click("#lookup button")
    page.wait_for_selector(f'#customer[data-loaded="{customer_id}"]', timeout=15_000)


@needs_chromium
def test_the_page_shows_the_customer_as_the_api_answers(
    browser: Browser, open_server: str, tmp_path: Path
) -> None:
    base = open_server
    api = httpx.Client(base_url=base, timeout=10)
    event = {"customer_id": CUSTOMER, "event_type": "view", "item_id": "K3", "event_id": "ui-1"}
    assert api.post("/v1/events", json=event).status_code == 202  # a recent event to show

    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{base}/ui")
    page.wait_for_selector('#overview[data-loaded="true"]', timeout=15_000)
    look_up(page, CUSTOMER)

    profile = get_json(api.get(f"/v1/customers/{CUSTOMER}"))
    features = profile["features"]
    recs = get_json(api.get(f"/v1/customers/{CUSTOMER}/recommendations?context=home&k=10"))
    offers = get_json(api.get(f"/v1/customers/{CUSTOMER}/offers?k=3"))
    nba = get_json(api.get(f"/v1/customers/{CUSTOMER}/next-best-action"))
    overview = get_json(api.get("/v1/overview"))
    model = get_json(api.get("/v1/model"))

    # the profile
    assert field(page, "#customer", "segment") == profile["segment"] == "champions"
    assert field(page, "#customer", "journey_stage") == profile["journey_stage"]
    assert field(page, "#customer", "churn_risk") == f"{profile['churn_risk'] * 100:.1f} %"
    assert field(page, "#customer", "clv") == fixed(features["clv"], 2)
    assert field(page, "#customer", "nps") == fixed(features["nps"], 1) == "10.0"
    assert field(page, "#customer", "csat") == fixed(features["csat"], 1)
    assert field(page, "#customer", "frequency") == fixed(features["frequency"], 0)
    assert field(page, "#customer", "in_model") == "in the model"
    # recent events: the view just posted
    assert page.locator("#recent-views li").all_inner_texts() == profile["recent_views"] == ["K3"]
    # recommendations, with their reasons
    rows = page.locator("#recommendations tr")
    assert [r.get_attribute("data-item") for r in rows.all()] == [
        item["item_id"] for item in recs["items"]
    ]
    assert recs["items"], "the known customer gets recommendations"
    for row, item in zip(rows.all(), recs["items"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[3:] == [f"{item['score']:.3f}", item["reason"]]
    assert field(page, "#customer", "strategy") == recs["strategy"] == "personalized"
    # offers and the next best action, with their reasons
    offer_rows = page.locator("#offers tr").all()
    assert [r.get_attribute("data-offer") for r in offer_rows] == [
        o["offer_id"] for o in offers["offers"]
    ]
    assert offers["offers"]
    for row, offer in zip(offer_rows, offers["offers"], strict=True):
        assert row.locator("td").nth(5).inner_text() == offer["reason"]
    action = page.locator("#nba [data-action]")
    assert action.get_attribute("data-action") == nba["action"]["action_id"]
    assert page.locator("#nba .reason").inner_text() == nba["action"]["reason"]
    alternatives = page.locator("#nba-alternatives li[data-action]").all()
    assert [a.get_attribute("data-action") for a in alternatives] == [
        a["action_id"] for a in nba["alternatives"]
    ]
    # the model version and the overview
    assert field(page, "header", "model_version") == model["version"] == profile["model_version"]
    segments = {
        row.get_attribute("data-name"): int(row.locator("td").first.inner_text())
        for row in page.locator("#segments tr").all()
    }
    assert segments == overview["segments"] and sum(segments.values()) == overview["n_customers"]
    stages = [row.get_attribute("data-name") for row in page.locator("#stages tr").all()]
    assert stages == list(overview["journey_stages"])
    assert page.locator('#metrics [data-metric="recall@10"] td').inner_text() == "0.5000"
    assert model["metrics"]["recall@10"] == 0.5

    page.screenshot(path=str(tmp_path / "customer-360.png"), full_page=True)
    if os.environ.get("RECSYS_UI_SCREENSHOT"):
        page.screenshot(path=os.environ["RECSYS_UI_SCREENSHOT"], full_page=True)

    # an unknown customer: no profile, a new customer's answers
    look_up(page, "nobody-42")
    assert "Not in the store" in page.locator("#customer-error").inner_text()
    assert field(page, "#customer", "segment") == DASH
    assert field(page, "#customer", "strategy") == "cold_start"

    assert problems == [] or all("404" in p for p in problems), problems
    assert requested and all(url.startswith(base) for url in requested), requested  # no CDN
    page.close()
    api.close()


def test_the_page_needs_the_read_scope_like_every_read_route(settings: Settings) -> None:
    with serve(create_app(settings)) as base:
        assert httpx.get(f"{base}/ui").status_code == 401
        page = httpx.get(f"{base}/ui", headers=READ)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = httpx.get(f"{base}/ui/app.js", headers=READ)
        assert script.headers["content-type"].startswith("text/javascript")
        assert "fetch(" in script.text
        assert httpx.get(f"{base}/ui/app.js").status_code == 401
        missing = httpx.get(f"{base}/ui/secrets.py", headers=READ)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


def test_the_overview_counts_the_served_customers(
    settings: Settings, offers_settings: Settings
) -> None:
    with serve(create_app(offers_settings)) as base:
        body = get_json(httpx.get(f"{base}/v1/overview", headers=READ))
        assert body["segments"] == {
            "about_to_sleep": 1, "at_risk": 1, "champions": 1, "loyal": 1,
            "potential_loyalist": 1,
        }  # fmt: skip
        assert body["journey_stages"] == {"retention": 2, "advocacy": 1, "at_risk": 1,
                                          "purchase": 1}  # fmt: skip
        assert body["n_customers"] == 5
        assert httpx.get(f"{base}/v1/overview").status_code == 401
