"""The customer pages in a real browser: headless Chromium driven by Playwright
(Debian's chromium; no browser download). JavaScript is off, as the pages need none,
and one context is a phone. Screenshots of every page are saved as test artefacts
(``$MAILTRIAGE_TEST_ARTIFACTS``, default ``test-artifacts/portal``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailtriage.portal.links import make_org_token, make_ticket_token
from test_conversation_e2e import ANNA, ERIKA, SECRET, STRANGER, agent_mail
from test_portal import OTHER_ADMIN, Site, mail, serve

CHROMIUM = os.environ.get("MAILTRIAGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("MAILTRIAGE_TEST_ARTIFACTS", "test-artifacts")) / "portal"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI: no Chromium at {CHROMIUM} (.ci/run installs it)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

import playwright.sync_api as playwright  # noqa: E402  (after the check above)


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    yield from serve(tmp_path, database_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1024, "height": 800}
    )
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_customer_follows_the_ticket_and_rates_it_in_a_browser(
    site: Site, page: Any, phone: Any
) -> None:
    ack = site.desk.open_ticket()
    link = site.link_in(ack)
    page.goto(link)
    assert page.locator("#reference").inner_text() == "DM-000001"
    assert page.locator("#status").get_attribute("data-status") == "new"
    shot(page, "ticket-new")
    # An agent answers, raises it to second level and asks back: the page follows.
    site.desk.send(agent_mail("#level L2\nWelches Druckermodell ist es?"), mail_from=ANNA)
    page.reload()
    assert page.locator("#status").get_attribute("data-status") == "waiting"
    assert "zweite Ebene" in page.locator("#level").inner_text()
    assert "Welches Druckermodell" in page.content()
    shot(page, "ticket-answered")
    # On a phone: the page fits the screen (no sideways scrolling).
    phone.goto(link)
    assert phone.locator("#reference").is_visible()
    box = phone.locator("main").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    shot(phone, "ticket-phone")
    # Resolved: the feedback mail's link opens the page with the score chosen.
    site.desk.send(agent_mail("#status resolved\nDer Drucker geht wieder."), mail_from=ANNA)
    [asked] = [r for r in site.desk.mails_to(ERIKA) if "?rate=" in r.text()]
    rate5 = re.search(r"(http://\S+\?rate=5)", asked.text()).group(1)  # type: ignore[union-attr]
    page.goto(rate5)
    assert page.locator('input[name="score"][value="5"]').is_checked()
    page.fill('textarea[name="comment"]', "Schnell und freundlich")
    page.click('button[type="submit"]')
    assert "Danke" in page.locator("#message").inner_text()
    assert page.locator("#rating").inner_text() == "5"
    shot(page, "ticket-rated")
    # English, switched on the page.
    page.click("a.lang")
    assert "Solved" in page.locator("#status").inner_text()


def test_forged_foreign_and_expired_links_in_a_browser(site: Site, page: Any) -> None:
    link = site.link_in(site.desk.open_ticket())
    page.goto(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"))
    assert "ungültig" in page.locator("#problem").inner_text() or "not valid" in page.content()
    assert "Drucker" not in page.content()
    shot(page, "forged")
    site.desk.send(mail(sender=STRANGER, subject="Mein Problem", body="Hilfe."), mail_from=STRANGER)
    future = datetime.now(UTC) + timedelta(days=1)
    foreign = make_ticket_token(SECRET.encode(), 1, STRANGER, future)  # not on ticket 1
    page.goto(f"{site.base}/t/{foreign}")
    assert "Drucker" not in page.content() and page.locator("#problem").is_visible()
    expired = make_ticket_token(SECRET.encode(), 1, ERIKA, datetime.now(UTC) - timedelta(hours=1))
    page.goto(f"{site.base}/t/{expired}")
    assert "abgelaufen" in page.locator("#problem").inner_text()
    shot(page, "expired")
    before = len(site.desk.relay.received)
    page.click('button[type="submit"]')  # "send a new link"
    assert [r.rcpt_tos for r in site.desk.relay.received[before:]] == [(ERIKA,)]
    other = make_org_token(SECRET.encode(), "andere.example", OTHER_ADMIN, future)
    page.goto(f"{site.base}/o/{other}")
    assert "DM-000001" not in page.content()
    shot(page, "other-organisation")
