"""`mailtriage run`: start the enabled roles, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from mailtriage.app import App
from mailtriage.config import Settings

log = logging.getLogger(__name__)


def run_service(settings: Settings, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    with App.from_settings(settings) as app:
        app.prepare_database()
        log.info("database ready (%s); storage in %s", app.engine.url.render_as_string(),
                 settings.storage_dir)
        if settings.worker.enabled:
            worker = app.worker()
            log.info("worker %s started", worker.owner)
            worker.run_forever(stop)
        else:
            stop.wait()
    log.info("stopped")
    return 0
