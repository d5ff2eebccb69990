"""The customer pages (Starlette): ticket pages by signed link, the organisation view,
feedback. Mounted by the HTTP role of ``mailtriage run``; read-only but for feedback
and sign-in requests.

Security: every page is reached by a signed link only (``portal.links``) and shows only
what the link is for; POST forms carry a CSRF token (double submit: a random cookie
and the same value in the form, compared in constant time); every answer has a strict
Content-Security-Policy, no referrer (links carry tokens) and is not cached. A forged,
expired or foreign link gets a plain page saying so, never a traceback.
"""

from __future__ import annotations

import hmac
import io
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mailtriage.attachment_data import AttachmentMissing, attachment_data
from mailtriage.blobs import BlobStore
from mailtriage.config import PortalOrganisation, Settings
from mailtriage.outbound.sla import format_due
from mailtriage.portal import links
from mailtriage.portal.words import choose_language, level_words, status_words, words
from mailtriage.store import portal as store

log = logging.getLogger(__name__)

__all__ = ["SECURITY_HEADERS", "PortalPages", "portal_routes"]

CSRF_COOKIE = "mt_csrf"
MAX_FORM_BYTES = 16 * 1024
THUMBNAIL = (320, 320)
_DONE = ("thanks", "too_late", "not_resolved")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

SendMail = Callable[[str, str, str, str], None]  # (kind, recipient, language, link)


def _templates_dir() -> Path:
    from mailtriage.outbound.render import default_templates_dir

    return default_templates_dir() / "portal"


@dataclass
class PortalPages:
    """The pages and what they need; ``send`` mails a link (sign-in or a renewed
    ticket link) and is given by the HTTP role (tests may pass their own)."""

    settings: Settings
    factory: sessionmaker[Session]
    secret: bytes
    base_url: str
    send: SendMail
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(_templates_dir())),
            autoescape=select_autoescape(default=True),
            # the pages render on the event loop: no stat of the template files each time
            auto_reload=False,
        )
        self.blobs = BlobStore(self.settings.storage_dir / "blobs")
        self.prefix = self.settings.mail.ticket_prefix
        self.orgs: dict[str, PortalOrganisation] = {
            o.domain: o for o in self.settings.portal.organisations
        }
        # Read once: the handler runs on the event loop, which must not wait for a disk.
        self.css = (_templates_dir() / "portal.css").read_text(encoding="utf-8")

    # -- links ------------------------------------------------------------------------

    def ticket_link(self, ticket_id: int, address: str) -> str:
        return links.ticket_url(
            self.settings, self.secret, ticket_id, address, self.clock(), self.base_url
        )

    def org_link(self, domain: str, address: str) -> str:
        expires = self.clock() + timedelta(minutes=self.settings.portal.signin_link_minutes)
        return f"{self.base_url}/o/{links.make_org_token(self.secret, domain, address, expires)}"

    # -- rendering --------------------------------------------------------------------

    def page(
        self,
        request: Request,
        template: str,
        language: str,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        other = "en" if language == "de" else "de"
        # The language switch links a page one can GET (not the path of a POST).
        values.setdefault("here", request.url.path if request.method == "GET" else "/portal")
        html = self.env.get_template(template).render(
            t=words(language),
            lang=language,
            other_lang=other,
            csrf=csrf,
            **values,
        )
        response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/",
                secure=self.base_url.startswith("https://"),
            )  # fmt: skip
        return response

    def language(self, request: Request, ticket_language: str | None = None) -> str:
        return choose_language(
            request.query_params.get("lang"),
            ticket_language,
            self.settings.triage.default_language,
        )

    def invalid(self, request: Request, token: str = "", expired: bool = False) -> HTMLResponse:
        language = self.language(request)
        return self.page(
            request,
            "invalid.html",
            language,
            status_code=410 if expired else 404,
            expired=expired,
            token=token,
        )

    async def form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded form of a POST, or None when it is too big, not a form, or
        its CSRF token does not match the cookie."""
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return None
        values = {k: v[0] for k, v in parsed.items()}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = values.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return None
        return values

    def client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    # -- ticket page ------------------------------------------------------------------

    def _ticket_claim(self, token: str) -> tuple[links.Claim | None, bool]:
        """(claim, expired); claim None for a forged token."""
        claim = links.read_ticket_token(self.secret, token)
        if claim is None:
            return None, False
        return claim, claim.expired(self.clock())

    def _allowed(self, session: Session, claim: links.Claim) -> bool:
        """The link's address may (still) see its ticket: one query, every request."""
        portal = self.settings.portal
        return store.may_view(session, int(claim.subject), claim.address, portal.admins)

    def _view(self, session: Session, claim: links.Claim) -> dict[str, Any] | None:
        if not self._allowed(session, claim):
            return None
        return store.public_ticket(session, int(claim.subject), self.prefix, claim.address)

    async def ticket(self, request: Request) -> Response:
        token = request.path_params["token"]
        claim, expired = self._ticket_claim(token)
        if claim is None or expired:
            return self.invalid(request, token, expired)
        return await run_in_threadpool(self._ticket_page, request, token, claim, None)

    def _ticket_page(
        self, request: Request, token: str, claim: links.Claim, message: str | None
    ) -> Response:
        with self.factory() as session:
            view = self._view(session, claim)
            if view is None:
                return self.invalid(request)
            feedback = store.feedback_of(session, view["id"])
            language = self.language(request, view["language"])
            if message is None and request.query_params.get("done") in _DONE:
                message = request.query_params["done"]
            rate = request.query_params.get("rate", "")
            chosen = int(rate) if rate in ("1", "2", "3", "4", "5") else None
            return self.page(
                request,
                "ticket.html",
                language,
                here=f"/t/{token}",
                token=token,
                ticket=view,
                status_text=status_words(view["status"], language),
                level_text=level_words(view["level"], language),
                times=self._times(view, language),
                when=lambda d: self._when(d, language),
                feedback=feedback,
                can_rate=view["status"] in ("resolved", "closed"),
                chosen=chosen if chosen is not None else (feedback.score if feedback else None),
                message=message,
            )

    def _when(self, value: datetime | None, language: str) -> str:
        if value is None:
            return ""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return format_due(value, self.settings.sla.timezone, language)

    def _times(self, view: dict[str, Any], language: str) -> list[tuple[str, str]]:
        t = words(language)
        row = view["row"]
        out = []
        if view["first_response_at"]:
            out.append((t["answered_at"], self._when(view["first_response_at"], language)))
        else:
            due = row.sla_first_response_due
            if due is not None:
                out.append((t["response_due"], self._when(due, language)))
        solution = row.sla_solution_due
        if solution and view["status"] not in ("resolved", "closed"):
            out.append((t["solution_due"], self._when(solution, language)))
        return out

    async def feedback(self, request: Request) -> Response:
        token = request.path_params["token"]
        claim, expired = self._ticket_claim(token)
        if claim is None or expired:
            return self.invalid(request, token, expired)
        values = await self.form(request)
        if values is None or values.get("score") not in ("1", "2", "3", "4", "5"):
            return await run_in_threadpool(self._ticket_page, request, token, claim, "bad_form")
        return await run_in_threadpool(
            self._save_feedback, request, token, claim, int(values["score"]),
            values.get("comment", ""),
        )  # fmt: skip

    def _save_feedback(
        self, request: Request, token: str, claim: links.Claim, score: int, comment: str
    ) -> Response:
        with self.factory() as session:
            if not self._allowed(session, claim):
                return self.invalid(request)
            result = store.save_feedback(
                session,
                int(claim.subject),
                claim.address,
                score,
                comment,
                "web",
                self.clock(),
                timedelta(days=self.settings.portal.feedback_change_days),
            )
            session.commit()
        message = "thanks" if result.saved else result.reason.replace(" ", "_")
        # Post/Redirect/Get: a reload shows the page, it does not post again.
        language = self.language(request)
        return RedirectResponse(
            f"/t/{token}?lang={language}&done={message}", status_code=303, headers=SECURITY_HEADERS
        )

    async def attachment(self, request: Request) -> Response:
        token = request.path_params["token"]
        claim, expired = self._ticket_claim(token)
        if claim is None or expired:
            return self.invalid(request, token, expired)
        thumb = request.query_params.get("thumb") == "1"
        return await run_in_threadpool(
            self._attachment, request, claim, int(request.path_params["attachment"]), thumb
        )

    def _attachment(
        self, request: Request, claim: links.Claim, attachment_id: int, thumb: bool
    ) -> Response:
        with self.factory() as session:
            if not self._allowed(session, claim):
                return self.invalid(request)
            att = store.public_attachment(session, int(claim.subject), attachment_id)
            if att is None:
                return self.invalid(request)
            content_type, filename = att.content_type, att.filename
            try:
                data = attachment_data(session, self.blobs, att.sha256)
            except (OSError, ValueError, AttachmentMissing):
                return self.invalid(request)
        headers = dict(SECURITY_HEADERS)
        if content_type in store.INLINE_IMAGE_TYPES:
            if thumb:
                try:
                    data, content_type = _thumbnail(data), "image/png"
                except Exception:  # not an image Pillow reads (or a decompression bomb)
                    return self.invalid(request)
            return Response(data, media_type=content_type, headers=headers)
        safe = "".join(c for c in filename if c.isalnum() or c in "._- ")[:100] or "file"
        headers["Content-Disposition"] = f'attachment; filename="{safe}"'
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def renew(self, request: Request) -> Response:
        """An expired ticket link: a new one goes to the address it was made for (and
        to no other), when that address may still see the ticket."""
        token = request.path_params["token"]
        claim = links.read_ticket_token(self.secret, token)
        values = await self.form(request)
        language = self.language(request)
        if claim is None or values is None:
            return self.invalid(request)
        await run_in_threadpool(self._renew, request, claim, language)
        return self.page(request, "sent.html", language, text=words(language)["renew_sent"])

    def _renew(self, request: Request, claim: links.Claim, language: str) -> None:
        address = claim.address
        with self.factory() as session:
            allowed = self._allowed(session, claim) and self._rate_ok(
                session, address, self.client(request)
            )
            store.record_request(session, address, self.client(request), allowed, self.clock())
            session.commit()
        if allowed:
            self._send("renew", address, language, self.ticket_link(int(claim.subject), address))

    # -- organisation view ------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        return self.page(request, "signin.html", self.language(request), sent=False)

    async def signin(self, request: Request) -> Response:
        values = await self.form(request)
        language = self.language(request)
        if values is None:
            return self.page(request, "signin.html", language, status_code=400, error=True)
        address = values.get("address", "").strip().lower()[:320]
        await run_in_threadpool(self._signin, request, address, language)
        # The same answer whether or not the address may sign in.
        return self.page(request, "signin.html", language, sent=True)

    def _signin(self, request: Request, address: str, language: str) -> None:
        domain = next(
            (d for d, org in self.orgs.items() if address in {a.lower() for a in org.addresses}),
            None,
        )
        with self.factory() as session:
            allowed = domain is not None and self._rate_ok(session, address, self.client(request))
            store.record_request(session, address, self.client(request), allowed, self.clock())
            session.commit()
        if allowed and domain is not None:
            self._send("signin", address, language, self.org_link(domain, address))

    def _rate_ok(self, session: Session, address: str, client: str) -> bool:
        since = self.clock() - timedelta(hours=1)
        portal = self.settings.portal
        by_address = store.count_requests(session, address=address, client=None, since=since)
        by_client = store.count_requests(session, address=None, client=client, since=since)
        if by_address >= portal.signin_per_address_per_hour:
            log.info("portal: sign-in link not sent, too many for one address this hour")
            return False
        if by_client >= portal.signin_per_client_per_hour:
            log.info("portal: sign-in link not sent, too many from client %s this hour", client)
            return False
        return True

    def _send(self, kind: str, address: str, language: str, link: str) -> None:
        try:
            self.send(kind, address, language, link)
        except Exception as exc:  # the page says the same; ops see it in the log
            log.warning("portal: %s mail not sent: %s", kind, exc)

    async def organisation(self, request: Request) -> Response:
        token = request.path_params["token"]
        claim = links.read_org_token(self.secret, token)
        if claim is None or claim.expired(self.clock()):
            return self.invalid(request, "", claim is not None)
        domain = str(claim.subject)
        if claim.address not in self.settings.portal.admins(domain):
            return self.invalid(request)  # no longer allowed (config changed)
        return await run_in_threadpool(self._organisation, request, domain, claim.address)

    def _organisation(self, request: Request, domain: str, address: str) -> Response:
        language = self.language(request)
        with self.factory() as session:
            tickets = store.organisation_tickets(session, domain, self.prefix)
            rows = [
                t
                | {
                    "link": self.ticket_link(t["id"], address),
                    "status_text": status_words(t["status"], language),
                    "due": self._when(t["row"].sla_due_at, language),
                }
                for t in tickets
            ]
        return self.page(
            request,
            "organisation.html",
            language,
            domain=domain,
            tickets=rows,
            when=lambda d: self._when(d, language),
        )

    async def stylesheet(self, request: Request) -> Response:
        headers = dict(SECURITY_HEADERS) | {"Cache-Control": "public, max-age=3600"}
        return Response(self.css, media_type="text/css", headers=headers)


def _thumbnail(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail(THUMBNAIL)
        out = io.BytesIO()
        image.convert("RGBA" if image.mode in ("P", "LA", "RGBA") else "RGB").save(out, "PNG")
    return out.getvalue()


def portal_routes(pages: PortalPages) -> list[Route]:
    return [
        Route("/t/{token}", pages.ticket, methods=["GET"]),
        Route("/t/{token}/feedback", pages.feedback, methods=["POST"]),
        Route("/t/{token}/renew", pages.renew, methods=["POST"]),
        Route("/t/{token}/files/{attachment:int}", pages.attachment, methods=["GET"]),
        Route("/portal", pages.signin_form, methods=["GET"]),
        Route("/portal/signin", pages.signin, methods=["POST"]),
        Route("/o/{token}", pages.organisation, methods=["GET"]),
        Route("/static/portal.css", pages.stylesheet, methods=["GET"]),
    ]
