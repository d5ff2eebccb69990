"""The HTTP role of `mailtriage run` (issue 13), driven over HTTP against the real daemon:
/healthz, /readyz (and what makes it 503), /metrics moving as mail flows, JSON logs."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from mails import mail
from servers import Daemon, dovecot_server, wait_for

SUPPORT = "support@dataandmore.com"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def write_config(path: Path, database_url: str, **sections: dict[str, Any]) -> Path:
    """A TOML config with the HTTP role on a free port and JSON logs."""
    base: dict[str, dict[str, Any]] = {
        "database": {"url": database_url},
        "storage": {"dir": str(path.parent / "var")},
        "worker": {"processes": 2, "lease_seconds": 5.0, "retry_base_seconds": 0.1},
        "smtp": {"port": 0},
        "http": {"enabled": True, "port": 0},
        "logging": {"format": "json"},
        "service": {"shutdown_grace_seconds": 5},
    }
    accounts = sections.pop("imap_account", None)
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        for name, values in base.items()
    )
    if accounts:
        text += (
            "[imap]\nenabled = true\nreconnect_initial_seconds = 0.2\n"
            "reconnect_max_seconds = 1.0\n[[imap.accounts]]\n"
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in accounts.items())
        )
    path.write_text(text, encoding="utf-8")
    return path


def http_port(daemon: Daemon) -> int:
    line = daemon.wait_for_line("/healthz /readyz /metrics at")
    found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert found, line
    return int(found.group(1))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(port, "/readyz")
    return status, json.loads(body)


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def send(port: int, raw: bytes, sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [SUPPORT], raw)


def wait_ready(port: int, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (lambda r: r[1] if r[0] == 200 else None)(readyz(port)),
        timeout=timeout,
        interval=0.2,
        what="/readyz 200",
    )


def test_endpoints_answer_and_metrics_move_when_mail_flows(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}")
    senders = [f"kunde{i}@firma{i}.example" for i in range(6)]
    subjects = [f"Drucker Nummer {i} druckt nicht" for i in range(4)]
    with Daemon(config) as daemon:
        smtp = daemon.smtp_port()
        port = http_port(daemon)
        assert get(port, "/healthz") == (200, "ok\n")
        body = wait_ready(port)
        assert body["ready"] is True
        assert {"database", "smtp", "worker", "scheduler", "inbox_age", "quarantine"} <= set(
            body["checks"]
        )
        before = scrape(port)
        assert value(before, "mailtriage_messages_received_total", source="smtp") == 0
        assert ("mailtriage_messages_received_total", frozenset({("source", "imap")})) in before

        first_id = "<erste@firma0.example>"
        mails = [
            mail(subject=subjects[i], sender=senders[i], message_id=first_id if i == 0 else None)
            for i in range(4)
        ]
        for raw, sender in zip(mails, senders, strict=False):
            send(smtp, raw, sender)
        # the customer's reply to the first one: appended to its ticket
        send(
            smtp,
            mail(subject="Re: " + subjects[0], sender=senders[0], in_reply_to=first_id),
            senders[0],
        )
        # the same Message-ID once more in other bytes: a duplicate
        send(
            smtp,
            mail(
                subject=subjects[0],
                sender=senders[0],
                message_id=first_id,
                headers={"X-Relayed": "twice"},
            ),
            senders[0],
        )
        # an auto-reply: ignored, with its reason
        send(
            smtp,
            mail(
                subject="Abwesenheitsnotiz",
                sender=senders[5],
                headers={"Auto-Submitted": "auto-replied"},
            ),
            senders[5],
        )
        # not a mail at all: quarantined
        send(smtp, b"this is not a message\r\n", senders[4])

        def processed() -> float:
            s = scrape(port)
            done = sum(
                v for (name, _l), v in s.items() if name == "mailtriage_messages_processed_total"
            )
            return s if done >= 8 else 0  # type: ignore[return-value]

        after: Samples = wait_for(processed, timeout=60, interval=0.3, what="8 processed")
        assert value(after, "mailtriage_messages_received_total", source="smtp") == 8
        assert value(after, "mailtriage_messages_received_total", source="imap") == 0
        outcomes = {
            dict(labels)["outcome"]: v
            for (name, labels), v in after.items()
            if name == "mailtriage_messages_processed_total"
        }
        assert outcomes == {
            "created": 4,
            "appended": 1,
            "duplicate": 1,
            "ignored": 1,
            "quarantined": 1,
        }, outcomes
        ignored = [
            dict(labels)["reason"]
            for (name, labels), v in after.items()
            if name == "mailtriage_messages_processed_total" and ("outcome", "ignored") in labels
        ]
        assert ignored == ["out_of_office"]  # the loop guard's kind
        assert (
            value(
                after, "mailtriage_messages_processed_total", outcome="quarantined", reason="parse"
            )
            == 1
        )
        assert value(after, "mailtriage_processing_latency_seconds_count") == 8
        assert value(after, "mailtriage_processing_latency_seconds_sum") > 0
        assert value(after, "mailtriage_inbox_depth", status="received") == 0
        assert value(after, "mailtriage_quarantined_messages") == 1
        open_tickets = sum(
            v for (name, _l), v in after.items() if name == "mailtriage_open_tickets"
        )
        assert open_tickets == 4
        assert value(after, "mailtriage_sla_events_total", kind="sla_breach") == 0
        assert value(after, "mailtriage_worker_up") == 1
        assert value(after, "mailtriage_database_up") == 1
        outbox = sum(v for (name, _l), v in after.items() if name == "mailtriage_outbox_messages")
        assert outbox >= 4  # an acknowledgement per new ticket, in some state

        # the quarantine grew since the last /readyz: not ready, saying why; then ready
        status, body = readyz(port)
        assert status == 503, body
        assert body["checks"]["quarantine"]["ok"] is False
        assert "grew from 0 to 1" in body["checks"]["quarantine"]["detail"]
        assert readyz(port)[0] == 200
        assert daemon.terminate(timeout=15) == 0

    lines = [line for line in daemon.text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    filed = [r for r in records if r.get("outcome") == "created"]
    assert len(filed) == 4
    assert all(re.fullmatch(r"DM-\d{6}", r["ticket"]) and r["inbound_id"] for r in filed)
    assert "erste@firma0.example" in {r.get("message_id") for r in filed}
    appended = [r for r in records if r.get("outcome") == "appended"]
    assert appended and appended[0]["ticket"] == next(
        r["ticket"] for r in filed if r["message_id"] == "erste@firma0.example"
    )
    quarantined = [r for r in records if r.get("outcome") == "quarantined"]
    assert quarantined and quarantined[0]["level"] == "warning" and quarantined[0]["inbound_id"]
    smtp_lines = [r for r in records if "queued inbound" in r["msg"]]
    assert len(smtp_lines) == 8 and all(r["inbound_id"] for r in smtp_lines)
    info = "\n".join(line for line, r in zip(lines, records, strict=True) if r["level"] == "info")
    for customer in [*senders, *subjects, "Abwesenheitsnotiz", "druckt seit heute"]:
        assert customer not in info, f"{customer!r} logged at INFO"


def test_readyz_names_the_imap_account_that_cannot_log_in(tmp_path: Path) -> None:
    with dovecot_server() as server:
        user = server.add_user()
        account = server.account(user, password="wrong-password", name="support-box")
        config = write_config(
            tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}", imap_account=account
        )
        with Daemon(config) as daemon:
            port = http_port(daemon)
            assert get(port, "/healthz")[0] == 200

            def backing_off() -> dict[str, Any] | None:
                status, body = readyz(port)
                check = body["checks"].get("imap:support-box", {})
                return body if status == 503 and "backing off" in check.get("detail", "") else None

            body = wait_for(backing_off, timeout=30, interval=0.2, what="imap backing off")
            check = body["checks"]["imap:support-box"]
            assert check["ok"] is False
            assert "cannot log in" in check["detail"]
            assert "authentication failed" in check["detail"].lower(), check["detail"]
            # everything else is fine: the account alone makes it 503
            others = {k: v["ok"] for k, v in body["checks"].items() if k != "imap:support-box"}
            wait_for(
                lambda: all(
                    v["ok"] for k, v in readyz(port)[1]["checks"].items() if k != "imap:support-box"
                ),
                timeout=30,
                what=f"the other checks to pass ({others})",
            )
            samples = scrape(port)
            assert value(samples, "mailtriage_imap_poll_errors_total", account="support-box") >= 1
            assert value(samples, "mailtriage_imap_connected", account="support-box") == 0
            assert value(samples, "mailtriage_imap_poll_lag_seconds", account="support-box") > 0


def test_readyz_with_a_working_imap_account_and_imap_mail_counted(tmp_path: Path) -> None:
    with dovecot_server() as server:
        user = server.add_user()
        account = server.account(user, name="box", idle=True, poll_interval_seconds=2)
        config = write_config(
            tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}", imap_account=account
        )
        with Daemon(config) as daemon:
            port = http_port(daemon)
            body = wait_ready(port)
            assert body["checks"]["imap:box"] == {"ok": True, "detail": "connected"}
            client = server.client(user)
            try:
                client.append("INBOX", mail(subject="per IMAP", sender="x@kunde.example"))
            finally:
                client.logout()
            wait_for(
                lambda: (
                    value(scrape(port), "mailtriage_messages_received_total", source="imap") == 1
                ),
                timeout=30,
                what="the IMAP message counted",
            )
            wait_for(
                lambda: (
                    value(
                        scrape(port),
                        "mailtriage_messages_processed_total",
                        outcome="created",
                        reason="",
                    )
                    == 1
                ),
                timeout=30,
                what="the IMAP message processed",
            )


@pytest.mark.postgres
def test_readyz_fails_while_the_database_is_unreachable(pg_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", pg_url)
    name = sa.engine.make_url(pg_url).database
    admin = sa.create_engine(
        sa.engine.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )

    def cut(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(
                sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            )
            if not allowed:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

    try:
        with Daemon(config) as daemon:
            port = http_port(daemon)
            wait_ready(port)
            cut(False)
            status, body = readyz(port)
            assert status == 503, body
            assert body["checks"]["database"]["ok"] is False
            assert "unreachable" in body["checks"]["database"]["detail"]
            assert get(port, "/healthz")[0] == 200  # alive, only not ready
            assert value(scrape(port), "mailtriage_database_up") == 0
            cut(True)
            wait_ready(port)
            assert value(scrape(port), "mailtriage_database_up") == 1
            assert daemon.terminate(timeout=15) == 0
    finally:
        cut(True)
        admin.dispose()


def test_http_port_in_use_is_one_line_naming_the_key(tmp_path: Path) -> None:
    first = write_config(tmp_path / "a.toml", f"sqlite:///{tmp_path / 'm.db'}")
    with Daemon(first) as a:
        port = http_port(a)
        clash = write_config(
            tmp_path / "b.toml", f"sqlite:///{tmp_path / 'm.db'}", http={"port": port}
        )
        with Daemon(clash) as b:
            assert b.proc.wait(30) == 2
        assert f"http.port: cannot listen on 127.0.0.1:{port}" in b.text()
        assert "Traceback" not in b.text()
        assert get(port, "/healthz")[0] == 200  # the first one carries on


def test_readyz_says_so_while_a_dead_worker_is_restarted(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}")
    with Daemon(config) as daemon:
        port = http_port(daemon)
        wait_ready(port)
        line = daemon.wait_for_line("started (pid")
        pid = int(re.search(r"started \(pid (\d+)\)", line).group(1))  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)

        def worker_not_ok() -> dict[str, Any] | None:
            status, body = readyz(port)
            return body if status == 503 and not body["checks"]["worker"]["ok"] else None

        body = wait_for(worker_not_ok, timeout=20, interval=0.05, what="/readyz naming the worker")
        assert re.search(r"not running|starting \(restart 1\)", body["checks"]["worker"]["detail"])
        body = wait_ready(port)
        assert "restarted 1 time(s)" in body["checks"]["worker"]["detail"]
        assert value(scrape(port), "mailtriage_worker_restarts_total") == 1
        # and the new worker counts into the same metrics
        send(daemon.smtp_port(), mail(subject="nach dem Neustart"), "a@kunde.example")
        wait_for(
            lambda: (
                value(
                    scrape(port),
                    "mailtriage_messages_processed_total",
                    outcome="created",
                    reason="",
                )
                == 1
            ),
            timeout=30,
            what="the message processed by the restarted worker",
        )


def test_bad_http_settings_are_one_line_naming_the_key(tmp_path: Path) -> None:
    for http, message in [
        ({"port": 99999}, "http.port: expected an integer in 0..65535, got 99999"),
        ({"max_inbox_age_seconds": 0}, "http.max_inbox_age_seconds: expected a number > 0"),
        ({"enabled": "yes"}, 'http.enabled: expected true or false, got "yes"'),
    ]:
        config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}", http=http)
        done = subprocess.run(
            [sys.executable, "-m", "mailtriage", "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_mail_imported_beside_the_daemon_counts_as_file_source(tmp_path: Path) -> None:
    """With $PROMETHEUS_MULTIPROC_DIR shared (the systemd unit sets it), `mailtriage
    import` run beside the daemon shows in the daemon's /metrics."""
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}")
    files = tmp_path / "mails"
    files.mkdir()
    for i in range(3):
        (files / f"{i}.eml").write_bytes(
            mail(subject=f"aus Datei {i}", sender=f"f{i}@kunde.example")
        )
    with Daemon(config, env=shared) as daemon:
        port = http_port(daemon)
        wait_ready(port)
        done = subprocess.run(
            [sys.executable, "-m", "mailtriage", "--config", str(config), "import", str(files)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **shared},
        )
        assert done.returncode == 0, done.stderr
        samples = scrape(port)
        assert value(samples, "mailtriage_messages_received_total", source="file") == 3
        assert value(samples, "mailtriage_messages_received_total", source="smtp") == 0
        assert (
            value(samples, "mailtriage_open_tickets", level="L1")
            + value(samples, "mailtriage_open_tickets", level="L2")
            + value(samples, "mailtriage_open_tickets", level="L3")
            == 3
        )


def test_the_metrics_directory_goes_with_the_daemon_even_after_kill_9(tmp_path: Path) -> None:
    def dirs(pid: int) -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob(f"mailtriage-metrics-{pid}-*"))

    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'm.db'}")
    with Daemon(config) as killed:
        http_port(killed)
        assert len(dirs(killed.proc.pid)) == 1
        killed.kill()  # SIGKILL: no atexit
    assert len(dirs(killed.proc.pid)) == 1
    with Daemon(config) as daemon:
        http_port(daemon)
        assert dirs(killed.proc.pid) == []  # swept by the next start
        assert len(dirs(daemon.proc.pid)) == 1
        assert daemon.terminate(timeout=15) == 0
    assert dirs(daemon.proc.pid) == []  # removed on a clean stop


def test_readyz_fails_when_mail_waits_longer_than_the_limit(tmp_path: Path) -> None:
    """No worker here (worker.enabled = false): the message waits, /readyz says so."""
    config = write_config(
        tmp_path / "c.toml",
        f"sqlite:///{tmp_path / 'm.db'}",
        worker={"enabled": False},
        http={"max_inbox_age_seconds": 1.5},
    )
    with Daemon(config) as daemon:
        port = http_port(daemon)
        body = wait_ready(port)
        assert "worker" not in body["checks"]
        assert body["checks"]["inbox_age"] == {"ok": True, "detail": "no message waiting"}
        send(daemon.smtp_port(), mail(subject="wartet"), "w@kunde.example")
        status, body = readyz(port)
        assert status == 200 and body["checks"]["inbox_age"]["ok"]  # young enough
        samples = scrape(port)
        assert value(samples, "mailtriage_inbox_depth", status="received") == 1

        def too_old() -> dict[str, Any] | None:
            status, body = readyz(port)
            return body if status == 503 else None

        body = wait_for(too_old, timeout=10, interval=0.2, what="/readyz 503")
        check = body["checks"]["inbox_age"]
        assert check["ok"] is False and "limit 1.5s" in check["detail"]
        assert value(scrape(port), "mailtriage_inbox_oldest_age_seconds") >= 1.5


def test_readyz_and_metrics_read_the_inbox_from_one_query(
    tmp_path: Path, database_url: str
) -> None:
    """/readyz and /metrics say the same about the inbox, each from one statement."""
    from datetime import timedelta
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from mailtriage.app import App
    from mailtriage.ops.health import Readiness
    from mailtriage.ops.metrics import DatabaseCollector
    from mailtriage.store.models import Inbound, utcnow

    from conftest import make_settings

    settings = make_settings(tmp_path, database_url)
    app = App.from_settings(settings)
    try:
        app.prepare_database()
        ids = [app.inbox.accept(mail(subject=f"Nummer {i}"), "test") for i in range(5)]
        statuses = ["received", "waiting", "processing", "quarantined", "done"]
        old = utcnow() - timedelta(hours=2)
        with app.factory() as session, session.begin():
            for n, status in enumerate(statuses):
                row = session.get(Inbound, ids[n].id)
                assert row is not None
                row.status = status
                if status == "waiting":
                    row.received_at = old
        inbound_statements: list[str] = []

        @sa.event.listens_for(app.engine, "before_cursor_execute")
        def seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if re.search(r"\bFROM inbound\b", statement):
                inbound_statements.append(statement)

        service: Any = SimpleNamespace(  # no roles running: the database checks matter here
            settings=settings,
            smtp=None,
            pollers=[],
            worker=None,
            outbound=None,
            sla_jobs=None,
            failed_roles=list,
            imap_roles=list,
        )
        _ready, body = Readiness(service, app.factory).report()
        assert len(inbound_statements) == 1
        age = body["checks"]["inbox_age"]
        assert not age["ok"] and re.match(
            r"oldest unprocessed message is 7[12]\d\ds old", age["detail"]
        )
        assert body["checks"]["quarantine"]["detail"].startswith("1 message(s)")
        inbound_statements.clear()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseCollector(app.factory))
        families = {
            f.name: {tuple(s.labels.values()): s.value for s in f.samples}
            for f in text_string_to_metric_families(generate_latest(registry).decode())
        }
        assert len(inbound_statements) == 1
        assert families["mailtriage_inbox_depth"] == {
            ("received",): 1.0,
            ("waiting",): 1.0,
            ("processing",): 1.0,
        }
        assert families["mailtriage_quarantined_messages"] == {(): 1.0}
        assert 7100 < families["mailtriage_inbox_oldest_age_seconds"][()] < 7300
    finally:
        app.close()


def test_readyz_and_role_states_are_one_view_of_the_roles(tmp_path: Path) -> None:
    """An IMAP poller whose thread ended with an error, though it was connected: /readyz
    fails it and ``Service.role_states`` says "failed" (both read ops.health.role_report);
    a poller backing off, and one connecting, are not ready either."""
    import threading
    from types import SimpleNamespace

    from mailtriage.app import App
    from mailtriage.ops.health import Readiness
    from mailtriage.service import Service

    from conftest import make_settings

    def poller(key: str, connected: bool, last_error: str = "") -> Any:
        flag = threading.Event()
        if connected:
            flag.set()
        state = SimpleNamespace(last_error=last_error, retry_at=0.0)
        return SimpleNamespace(key=key, connected=flag, standby_for=None, state=state)

    settings = make_settings(tmp_path, smtp={"enabled": False})
    pollers = [
        poller("dead", connected=True),
        poller("fine", connected=True),
        poller("refused", connected=False, last_error="LOGIN failed"),
        poller("new", connected=False),
    ]
    service: Any = SimpleNamespace(
        settings=settings,
        smtp=None,
        pollers=pollers,
        worker=None,
        outbound=None,
        sla_jobs=None,
        failed_roles=lambda: ["imap-0"],
        imap_roles=lambda: ["imap-0", "imap-1", "imap-2", "imap-3"],
    )
    with App.from_settings(settings) as app:
        app.prepare_database()
        ready, body = Readiness(service, app.factory).report()
    checks = body["checks"]
    assert not ready
    assert checks["imap:dead"] == {"ok": False, "detail": "stopped with an error"}
    assert checks["imap:fine"] == {"ok": True, "detail": "connected"}
    assert checks["imap:refused"]["ok"] is False
    assert checks["imap:refused"]["detail"].startswith("backing off after: LOGIN failed")
    assert checks["imap:new"] == {"ok": False, "detail": "connecting"}
    assert Service.role_states(service) == {
        "imap-0": "failed",
        "imap-1": "running",
        "imap-2": "backing off",
        "imap-3": "connecting",
    }


def test_an_imap_role_that_dies_is_failed_on_readyz_and_stops_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a real Service and Dovecot: a poller that was connected and whose thread
    then ends with an error (a bug in its lease step, the one place an error is not
    retried) is "failed" in ``role_states`` and on /readyz, and the daemon stops with
    exit status 1 instead of running on without its intake."""
    import threading

    from mailtriage.intake.imap import ImapPoller
    from mailtriage.service import Service, run_service

    from conftest import make_settings

    real_take_lease = ImapPoller.take_lease
    broken = threading.Event()

    def take_lease(poller: ImapPoller) -> bool:
        if poller.connected.is_set() or broken.is_set():
            broken.set()
            raise RuntimeError("a bug in the lease step")
        return real_take_lease(poller)

    monkeypatch.setattr(ImapPoller, "take_lease", take_lease)
    monkeypatch.setattr("mailtriage.service.WATCH_SECONDS", 3.0)  # time to look at it
    caplog.set_level("INFO")
    with dovecot_server() as server:
        account = server.account(server.add_user(), name="box", poll_interval_seconds=1)
        settings = make_settings(
            tmp_path,
            smtp={"enabled": False},
            imap={"enabled": True, "accounts": [account], "lease_seconds": 1.5},
            http={"enabled": True, "port": 0},
            service={"shutdown_grace_seconds": 5},
        )
        services: list[Service] = []
        result: dict[str, int] = {}
        thread = threading.Thread(
            target=lambda: result.update(
                code=run_service(settings, threading.Event(), on_ready=services.append)
            )
        )
        thread.start()
        try:
            wait_for(lambda: broken.is_set(), timeout=30, what="the poller connected, then broken")
            service = services[0]
            states = wait_for(
                lambda: (s := service.role_states()).get("imap-0") == "failed" and s,
                timeout=5,
                interval=0.05,
                what="imap-0 failed",
            )
            assert states["imap-0"] == "failed"
            assert service.http is not None
            status, body = readyz(service.http.address[1])
            assert status == 503
            assert body["checks"]["imap:box"] == {"ok": False, "detail": "stopped with an error"}
        finally:
            thread.join(30)
    assert result == {"code": 1}
    assert "imap-0 stopped with an error" in caplog.text
    assert "role(s) ended unexpectedly: imap-0; stopping" in caplog.text
