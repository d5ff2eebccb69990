"""The customer pages in a real browser against the running daemon: `mailtriage run`
with its HTTP role, SMTP listener, worker and outbox sender (to a recording relay),
and headless Chromium (Debian's; no browser download) driven by Playwright with
JavaScript off, as the pages need none, and one context a phone. Screenshots of the
pages are saved as test artefacts (``$MAILTRIAGE_TEST_ARTIFACTS``, default
``test-artifacts``)."""

from __future__ import annotations

import json
import os
import re
import smtplib
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailtriage.portal.links import make_org_token, make_ticket_token
from relay import Received, Relay
from test_conversation_e2e import ANNA, AUTH_PASS, ERIKA, FIRST, OLD_SUBJECT, SECRET, STRANGER

from mails import mail
from servers import Daemon

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
ACME_ADMIN = "it-lead@kunde.example"
OTHER_ADMIN = "boss@andere.example"
SUPPORT = "support@dataandmore.com"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI: no Chromium at {CHROMIUM} (.ci/run installs it)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

import playwright.sync_api as playwright  # noqa: E402  (after the check above)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Desk:
    """`mailtriage run` on a config of its own, mail in over SMTP, mail out to a relay."""

    def __init__(self, tmp_path: Path, database_url: str, relay: Relay) -> None:
        self.relay = relay
        self.http = _free_port()
        self.base = f"http://127.0.0.1:{self.http}"
        sections: dict[str, dict[str, Any]] = {
            "database": {"url": database_url},
            "storage": {"dir": str(tmp_path / "var"), "fsync": False},
            "worker": {"processes": 1, "retry_base_seconds": 0.1},
            "smtp": {"port": 0},
            "http": {"enabled": True, "port": self.http},
            "outbound": relay.settings() | {"poll_interval_seconds": 0.2},
            "security": {"secret": SECRET, "authserv_ids": ["mx.dataandmore.com"]},
            "service": {"shutdown_grace_seconds": 5},
        }
        text = "".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            for name, values in sections.items()
        )
        text += '[[agents]]\naddress = "anna@dataandmore.com"\nname = "Anna Schmidt"\n'
        text += 'level = "L1"\n'
        for domain, admin in (("kunde.example", ACME_ADMIN), ("andere.example", OTHER_ADMIN)):
            text += f'[[portal.organisations]]\ndomain = "{domain}"\naddresses = ["{admin}"]\n'
        config = tmp_path / "mailtriage.toml"
        config.write_text(text, encoding="utf-8")
        self.daemon = Daemon(config).__enter__()
        self.smtp = self.daemon.smtp_port()
        self.daemon.wait_for_line(f"127.0.0.1:{self.http}")

    def close(self) -> None:
        self.daemon.__exit__(None, None, None)

    def send(self, raw: bytes, mail_from: str = ERIKA) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=30) as client:
            client.sendmail(mail_from, [SUPPORT], raw)

    def mails_to(self, address: str) -> list[Received]:
        return [r for r in self.relay.received if address in r.rcpt_tos]

    def wait_mail(self, address: str, count: int) -> list[Received]:
        return _until(  # type: ignore[no-any-return]
            lambda: (m := self.mails_to(address)) and len(m) >= count and m,
            f"mail {count} to {address}",
        )

    def agent(self, body: str) -> None:
        raw = mail(
            sender=f"Anna Schmidt <{ANNA}>",
            subject=f"Re: [DM-000001] {OLD_SUBJECT}",
            body=body,
            headers=dict(AUTH_PASS),
        )
        self.send(raw, mail_from=ANNA)


def link_in(received: Received, kind: str = "t") -> str:
    found = re.findall(rf"http://127\.0\.0\.1:\d+/{kind}/[A-Za-z0-9_.-]+", received.text())
    assert found, received.text()
    return str(found[0])


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[Desk]:
    with Relay() as relay:
        desk = Desk(tmp_path, database_url, relay)
        try:
            yield desk
        finally:
            desk.close()


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


def status_after_reload(page: Any, wanted: str) -> bool:
    page.reload()
    return bool(page.locator("#status").get_attribute("data-status") == wanted)


def test_customer_follows_the_ticket_and_rates_it_in_a_browser(
    desk: Desk, page: Any, phone: Any
) -> None:
    desk.send(mail(**FIRST))
    [ack] = desk.wait_mail(ERIKA, 1)
    link = link_in(ack)
    page.goto(link)
    assert page.locator("#reference").inner_text() == "DM-000001"
    assert page.locator("#status").get_attribute("data-status") == "new"
    assert "seit heute früh nicht mehr" in page.content()
    shot(page, "ticket-new")
    # An agent answers by mail, raises it to second level and asks back: the page follows.
    desk.agent("#level L2\nWelches Druckermodell ist es?")
    _until(lambda: status_after_reload(page, "waiting"), "status waiting on the page")
    assert "zweite Ebene" in page.locator("#level").inner_text()
    assert "Welches Druckermodell" in page.content() and ANNA not in page.content()
    shot(page, "ticket-answered")
    # On a phone: the page fits the screen (no sideways scrolling).
    phone.goto(link)
    box = phone.locator("main").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    shot(phone, "ticket-phone")
    # Resolved: the feedback mail's link opens the page with the score chosen.
    desk.agent("#status resolved\nDer Drucker geht wieder.")
    asked = _until(
        lambda: [r for r in desk.mails_to(ERIKA) if "?rate=" in r.text()], "the feedback mail"
    )
    rate5 = re.search(r"(http://\S+\?rate=5)", asked[0].text()).group(1)  # type: ignore[union-attr]
    page.goto(rate5)
    assert page.locator('input[name="score"][value="5"]').is_checked()
    page.fill('textarea[name="comment"]', "Schnell und freundlich")
    page.click('button[type="submit"]')
    assert "Danke" in page.locator("#message").inner_text()
    assert page.locator("#rating").inner_text() == "5"
    shot(page, "ticket-rated")
    with urllib.request.urlopen(f"{desk.base}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'mailtriage_feedback_ratings{score="5"} 1.0' in metrics
    page.click("a.lang")  # English, switched on the page
    assert "Solved" in page.locator("#status").inner_text()


def test_forged_foreign_expired_links_and_another_organisation(desk: Desk, page: Any) -> None:
    desk.send(mail(**FIRST))
    link = link_in(desk.wait_mail(ERIKA, 1)[0])
    page.goto(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"))
    assert page.locator("#problem").is_visible() and "Drucker" not in page.content()
    shot(page, "forged")
    # The token of another ticket (the stranger's own) shows that ticket only.
    desk.send(mail(sender=STRANGER, subject="Mein Problem", body="Hilfe."), mail_from=STRANGER)
    page.goto(link_in(desk.wait_mail(STRANGER, 1)[0]))
    assert "DM-000002" in page.content() and "Drucker" not in page.content()
    future = datetime.now(UTC) + timedelta(days=1)
    foreign = make_ticket_token(SECRET.encode(), 1, STRANGER, future)  # not on ticket 1
    page.goto(f"{desk.base}/t/{foreign}")
    assert page.locator("#problem").is_visible() and "Drucker" not in page.content()
    expired = make_ticket_token(SECRET.encode(), 1, ERIKA, datetime.now(UTC) - timedelta(hours=1))
    page.goto(f"{desk.base}/t/{expired}")
    assert "abgelaufen" in page.locator("#problem").inner_text()
    shot(page, "expired")
    page.click('button[type="submit"]')  # "send a new link": to Erika, and no one else
    [_, renewed] = desk.wait_mail(ERIKA, 2)
    page.goto(link_in(renewed))
    assert page.locator("#reference").inner_text() == "DM-000001"
    # The organisation view: sign-in by mail, then only that organisation's tickets.
    page.goto(f"{desk.base}/portal")
    page.fill('input[name="address"]', ACME_ADMIN)
    page.click('button[type="submit"]')
    assert page.locator("#message").is_visible()
    listing = link_in(desk.wait_mail(ACME_ADMIN, 1)[0], "o")
    page.goto(listing)
    assert "DM-000001" in page.content() and "Mein Problem" not in page.content()
    shot(page, "organisation")
    other = make_org_token(SECRET.encode(), "andere.example", OTHER_ADMIN, future)
    page.goto(f"{desk.base}/o/{other}")
    assert "DM-000001" not in page.content()
    shot(page, "other-organisation")
