"""The HTTP role of `mailtriage run`: /healthz, /readyz, /metrics, and the customer
pages (``portal/``) when ``portal.enabled``.

Starlette answers, uvicorn serves, in an asyncio loop of its own thread (like the SMTP
listener), so neither waits for the other. The socket is bound before the thread
starts: a port in use is a one-line config error (``http.port``), and port 0 works
(the chosen port is logged). /readyz and /metrics query the database, so they are
plain functions, run by Starlette in its thread pool, not on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailtriage.config import ConfigError, HttpSettings, Settings
from mailtriage.ops import metrics
from mailtriage.ops.health import Readiness
from mailtriage.portal.app import PortalPages, portal_routes
from mailtriage.portal.links import base_url

if TYPE_CHECKING:
    from mailtriage.service import Service

log = logging.getLogger(__name__)


def make_app(service: Service, factory: sessionmaker[Session]) -> Starlette:
    readiness = Readiness(service, factory)
    registry = metrics.registry_for(service, factory)

    def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(_request: Request) -> Response:
        ready, body = readiness.report()
        return JSONResponse(body, status_code=200 if ready else 503)

    def metrics_endpoint(_request: Request) -> Response:
        return Response(metrics.render(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    settings = service.app.settings
    if settings.portal.enabled:
        routes += portal_routes(portal_pages(settings, factory))
    return Starlette(routes=routes)


def portal_pages(settings: Settings, factory: sessionmaker[Session]) -> PortalPages:
    """The customer pages with what they need from the config: the secret that signs
    their links, where customers reach them, and the mailer of sign-in links."""
    from mailtriage.portal.mail import link_sender
    from mailtriage.server_secret import load_secret

    secret = load_secret(settings.security, settings.storage_dir)
    return PortalPages(settings, factory, secret, base_url(settings), link_sender(settings))


class HttpServer:
    def __init__(self, config: HttpSettings, app: Starlette) -> None:
        self.config = config
        self.app = app
        self.address: tuple[str, int] = (config.host, config.port)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        sock = self._bind()
        self.address = sock.getsockname()[:2]
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_config=None,  # our logging setup, our format
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )
        # uvicorn's start-up chatter ("Started server process", ...) is not news.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = server

        def body() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=body, name="http", daemon=True)
        self._thread.start()
        log.info("HTTP /healthz /readyz /metrics at http://%s:%d", self.address[0], self.address[1])
        return self.address

    def _bind(self) -> socket.socket:
        c = self.config
        try:
            infos = socket.getaddrinfo(c.host, c.port, type=socket.SOCK_STREAM)
            family = infos[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
            sock.listen(64)
        except OSError as exc:
            raise ConfigError(
                f"http.port: cannot listen on {c.host}:{c.port}: {exc.strerror or exc}"
            ) from None
        sock.set_inheritable(False)
        return sock

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
