"""The customer pages over real HTTP (uvicorn on loopback) against a desk fed by real
SMTP: the link in the acknowledgement, what a page shows and hides, feedback, the
organisation view, and every way a stranger might read someone else's ticket."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from mailtriage.cli import main as cli_main
from mailtriage.portal.app import PortalPages, portal_routes
from mailtriage.portal.links import make_org_token, make_ticket_token, strip_page_links
from mailtriage.portal.mail import link_sender
from mailtriage.store.models import Event, Feedback
from relay import Received, Relay
from test_conversation_e2e import ANNA, ERIKA, FIRST, SECRET, STRANGER, Desk, agent_mail

from mails import mail

ACME_ADMIN = "it-lead@kunde.example"
OTHER_ADMIN = "boss@andere.example"
PORTAL = {
    "organisations": [
        {"domain": "kunde.example", "addresses": [ACME_ADMIN]},
        {"domain": "andere.example", "addresses": [OTHER_ADMIN]},
    ],
    "signin_per_address_per_hour": 2,
}
LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/[to]/[A-Za-z0-9_.-]+")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    """A desk plus the pages served by uvicorn on a loopback port."""

    def __init__(self, desk: Desk, port: int) -> None:
        self.desk = desk
        self.base = f"http://127.0.0.1:{port}"
        settings = desk.app.settings
        self.pages = PortalPages(
            settings, desk.app.factory, SECRET.encode(), self.base, link_sender(settings)
        )
        config = uvicorn.Config(
            Starlette(routes=portal_routes(self.pages)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.base, timeout=10, follow_redirects=True)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)

    def link_in(self, received: Received) -> str:
        found = LINK_RE.findall(received.text())
        assert found, received.text
        return str(found[0])

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, **kw)

    def post_form(self, url: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        form_page = "/portal" if url == "/portal/signin" else url.rsplit("/", 1)[0]
        page = self.client.get(form_page) if csrf else None
        if page is not None and csrf:
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            data = data | {"csrf": token.group(1) if token else ""}
        return self.client.post(url, data=data)


def serve(tmp_path: Path, database_url: str) -> Iterator[Site]:
    """A desk and its pages on loopback (the ``site`` fixtures)."""
    port = _free_port()
    with Relay() as relay:
        desk = Desk(
            tmp_path,
            database_url,
            relay,
            portal=PORTAL | {"base_url": f"http://127.0.0.1:{port}"},
        )
        site = Site(desk, port)
        try:
            yield site
        finally:
            site.close()
            desk.close()


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    yield from serve(tmp_path, database_url)


def _open(site: Site) -> str:
    ack = site.desk.open_ticket()
    return site.link_in(ack)


# -- the ticket page ------------------------------------------------------------------


def test_the_acknowledgement_links_a_page_that_shows_the_ticket(site: Site) -> None:
    link = _open(site)
    assert link in site.desk.mails_to(ERIKA)[0].html()  # the HTML part too
    [notice] = site.desk.mails_to(ANNA)  # agents' mail links no customer page
    assert "/t/" not in notice.text() and "/t/" not in notice.html()
    page = site.get(link)
    assert page.status_code == 200
    assert "DM-000001" in page.text and "Drucker druckt nicht" in page.text
    assert "Eingegangen" in page.text  # German: the ticket's language
    # Our acknowledgement is listed by its subject; its text (with Erika's own link) is not.
    assert "Automatische Nachricht" in page.text and "/t/" not in page.text.split("<main>")[1]
    assert "seit heute früh nicht mehr" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    english = site.get(link + "?lang=en")
    assert "Received: we have your request" in english.text


def test_the_page_shows_the_agents_answer_but_never_a_note_or_their_address(site: Site) -> None:
    link = _open(site)
    site.desk.send(
        agent_mail(
            "#level L2\nBitte starten Sie den Drucker neu.\n\n#note\nKunde zahlt nicht, intern."
        ),
        mail_from=ANNA,
    )
    page = site.get(link)
    assert "Bitte starten Sie den Drucker neu." in page.text
    assert "Kunde zahlt nicht" not in page.text
    assert ANNA not in page.text
    assert 'data-status="waiting"' in page.text
    assert "Spezialisten (zweite Ebene)" in page.text


def test_forged_foreign_and_expired_links_show_nothing_of_the_ticket(site: Site) -> None:
    link = _open(site)
    token = link.rsplit("/", 1)[1]
    head, _, sig = token.rpartition(".")
    forged = site.get(f"/t/{head}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}")
    assert forged.status_code == 404 and "Drucker" not in forged.text
    # A stranger opens a ticket of their own: their link shows theirs, never Erika's.
    site.desk.send(mail(sender=STRANGER, subject="Mein Problem", body="Bitte helfen."),
                   mail_from=STRANGER)  # fmt: skip
    theirs = site.get(site.link_in(site.desk.mails_to(STRANGER)[0]))
    assert "DM-000002" in theirs.text and "Drucker" not in theirs.text
    # A correctly signed link for ticket 1 made out to someone who is not on it.
    future = datetime.now(UTC) + timedelta(days=1)
    foreign = make_ticket_token(SECRET.encode(), 1, STRANGER, future)
    page = site.get(f"/t/{foreign}")
    assert page.status_code == 404 and "Drucker" not in page.text
    # Signed with another secret.
    other = make_ticket_token(b"another secret, also long enough", 1, ERIKA, future)
    assert site.get(f"/t/{other}").status_code == 404
    # An organisation token is not a ticket token.
    org = make_org_token(SECRET.encode(), "kunde.example", ERIKA, future)
    assert site.get(f"/t/{org}").status_code == 404
    # Expired: a plain page that offers a new link, sent to Erika only.
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = make_ticket_token(SECRET.encode(), 1, ERIKA, past)
    page = site.get(f"/t/{expired}")
    assert page.status_code == 410 and "Drucker" not in page.text and "/renew" in page.text
    before = len(site.desk.relay.received)
    renewed = site.post_form(f"/t/{expired}/renew", {})
    assert renewed.status_code == 200
    new = site.desk.relay.received[before:]
    assert [r.rcpt_tos for r in new] == [(ERIKA,)]
    assert site.get(site.link_in(new[0])).status_code == 200
    for bad in ("", "x", "a" * 5000, "../../etc/passwd"):
        assert site.get(f"/t/{bad}").status_code == 404  # not "expired": not ours


def test_a_post_without_the_csrf_token_changes_nothing(site: Site) -> None:
    link = _open(site)
    site.desk.send(agent_mail("#status resolved\nErledigt."), mail_from=ANNA)
    answer = site.client.post(f"{link}/feedback", data={"score": "1"})
    assert "ungültig" in answer.text
    assert site.desk.count(Feedback) == 0


def test_screenshots_are_shown_as_thumbnails_and_nothing_else_is_served(site: Site) -> None:
    from io import BytesIO

    from PIL import Image

    image = BytesIO()
    Image.new("RGB", (800, 600), (200, 30, 30)).save(image, "PNG")
    site.desk.send(
        mail(**FIRST, attachments=[("fehler.png", "image/png", image.getvalue())]),
    )
    link = site.link_in(site.desk.mails_to(ERIKA)[0])
    page = site.get(link)
    [src] = re.findall(r'<img src="([^"]+)"', page.text)
    thumb = site.get(src.replace("&amp;", "&"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert Image.open(BytesIO(thumb.content)).size[0] <= 320
    attachment_id = int(re.search(r"/files/(\d+)", src).group(1))  # type: ignore[union-attr]
    assert site.get(f"{link}/files/{attachment_id + 1}").status_code == 404
    # the file lost from the blob store (written without an fsync): cut out of the
    # customer's message again
    sha = hashlib.sha256(image.getvalue()).hexdigest()
    site.desk.app.blobs.path(sha).unlink()
    again = site.get(f"{link}/files/{attachment_id}")
    assert again.status_code == 200 and again.content == image.getvalue()


# -- feedback -------------------------------------------------------------------------


def test_feedback_asked_on_resolve_given_on_the_page_and_reported(site: Site) -> None:
    _open(site)
    site.desk.send(agent_mail("#status resolved\nDer Drucker geht wieder."), mail_from=ANNA)
    asked = [r for r in site.desk.mails_to(ERIKA) if "?rate=" in r.text()]
    assert len(asked) == 1
    assert asked[0].message["Auto-Submitted"] == "auto-generated"
    rate4 = re.search(r"(http://\S+\?rate=4)", asked[0].text()).group(1)  # type: ignore[union-attr]
    page = site.get(rate4)
    assert re.search(r'value="4" checked', page.text)
    base = rate4.split("?")[0]
    saved = site.post_form(f"{base}/feedback", {"score": "4", "comment": "Schnell & nett"})
    assert "Danke für Ihre Bewertung" in saved.text
    changed = site.post_form(f"{base}/feedback", {"score": "5", "comment": "Sehr gut"})
    assert 'id="rating">5<' in changed.text
    assert site.desk.count(Feedback) == 1
    assert len(site.desk.events(1, "feedback")) == 2


def test_a_reply_with_a_number_is_a_rating_and_does_not_reopen(site: Site, capsys: Any) -> None:
    _open(site)
    site.desk.send(agent_mail("#status resolved\nErledigt."), mail_from=ANNA)
    [asked] = [r for r in site.desk.mails_to(ERIKA) if "?rate=" in r.text()]
    site.desk.send(
        mail(
            subject=f"Re: {asked.message['Subject']}",
            body="4 - danke, ging schnell\n\n> Wie zufrieden waren Sie?",
            in_reply_to=asked.message["Message-ID"],
            to=asked.message["Reply-To"].addresses[0].addr_spec,
        )
    )
    assert site.desk.ticket(1).status == "resolved"
    with site.desk.app.factory() as session:
        row = session.get(Feedback, 1)
        assert row is not None and (row.score, row.source) == (4, "mail")
        assert row.comment == "danke, ging schnell"
    # A number in a reply to any other mail is just a reply (it reopens).
    site.desk.send(
        mail(subject="Re: [DM-000001] Drucker druckt nicht", body="2 Drucker gehen nicht")
    )
    assert site.desk.ticket(1).status == "open"
    assert site.desk.count(Event, Event.kind == "feedback") == 1


# -- the organisation view ------------------------------------------------------------


def test_organisation_sign_in_lists_its_tickets_and_only_its_own(site: Site) -> None:
    _open(site)
    site.desk.send(mail(sender=STRANGER, subject="Fremdes Problem", body="Hilfe."),
                   mail_from=STRANGER)  # fmt: skip
    before = len(site.desk.relay.received)
    for address in (ACME_ADMIN, "nobody@kunde.example", STRANGER):
        answer = site.post_form("/portal/signin", {"address": address})
        assert answer.status_code == 200 and 'id="message"' in answer.text
    sent = site.desk.relay.received[before:]
    assert [r.rcpt_tos for r in sent] == [(ACME_ADMIN,)]  # same answer, one mail
    listing = site.get(site.link_in(sent[0]))
    assert "DM-000001" in listing.text and "Fremdes Problem" not in listing.text
    ticket_link = re.search(r'href="(http://[^"]+/t/[^"?]+)', listing.text).group(1)  # type: ignore[union-attr]
    assert "Drucker" in site.get(ticket_link).text
    # Another organisation's admin with a valid sign-in sees their own (none) only.
    future = datetime.now(UTC) + timedelta(minutes=5)
    other = make_org_token(SECRET.encode(), "andere.example", OTHER_ADMIN, future)
    assert "DM-000001" not in site.get(f"/o/{other}").text
    # Signing someone else's domain needs the secret.
    smuggled = make_org_token(SECRET.encode(), "kunde.example", OTHER_ADMIN, future)
    assert site.get(f"/o/{smuggled}").status_code == 404
    # Rate limit: two sign-in mails per address and hour.
    for _ in range(3):
        site.post_form("/portal/signin", {"address": ACME_ADMIN})
    assert sum(ACME_ADMIN in r.rcpt_tos for r in site.desk.relay.received) == 2


def test_report_feedback_prints_counts_average_and_comments(site: Site, capsys: Any) -> None:
    link = _open(site)
    site.desk.send(agent_mail("#level L2\n#status resolved\nErledigt."), mail_from=ANNA)
    site.post_form(f"{link}/feedback", {"score": "2", "comment": "zu langsam"})
    settings_file = Path(site.desk.app.settings.storage.dir).parent / "config.toml"
    settings_file.write_text(
        f'[database]\nurl = "{site.desk.app.settings.database_url}"\n'
        f'[storage]\ndir = "{site.desk.app.settings.storage.dir}"\n'
        f'[security]\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli_main(["--config", str(settings_file), "report", "feedback", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["count"] == 1 and report["total"]["average"] == 2
    assert report["by_level"]["L2"]["comments"][0]["comment"] == "zu langsam"
    assert cli_main(["--config", str(settings_file), "report", "feedback", "--since", "bad"]) == 2


def test_tickets_link_prints_a_working_link_and_refuses_strangers(
    site: Site, capsys: Any, tmp_path: Path
) -> None:
    _open(site)
    s = site.desk.app.settings
    config = tmp_path / "link.toml"
    config.write_text(
        f'[database]\nurl = "{s.database_url}"\n[storage]\ndir = "{s.storage.dir}"\n'
        f'[security]\nsecret = "{SECRET}"\n[portal]\nbase_url = "{site.base}"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli_main(["--config", str(config), "tickets", "link", "DM-000001", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["address"] == ERIKA
    assert "Drucker druckt nicht" in site.get(printed["url"]).text
    assert cli_main(["--config", str(config), "tickets", "link", "1", "--for", STRANGER]) == 2
    assert "not on DM-000001" in capsys.readouterr().err


def test_page_links_are_stripped_from_text_quoted_to_staff_and_nothing_else() -> None:
    secret = b"a secret long enough for the portal links"
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    ticket = make_ticket_token(secret, 42, ERIKA, expires)
    org = make_org_token(secret, "kunde.example", ERIKA, expires)
    text = (
        f"Ihre Seite: https://help.example/desk/t/{ticket}\n"
        f"> Bewerten: <http://localhost:8025/t/{ticket}?rate=5>\n"
        f"Alle Tickets: https://help.example/o/{org} und /t/{ticket}/feedback.\n"
        "Siehe https://github.com/t/issues.html und https://example.org/o/abc.def"
    )
    out = strip_page_links(text)
    assert ticket not in out and org not in out
    assert out.count("[link to the customer's page removed]") == 4
    assert "<[link to the customer's page removed]>" in out
    assert "https://github.com/t/issues.html" in out and "https://example.org/o/abc.def" in out
