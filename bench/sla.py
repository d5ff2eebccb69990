"""The SLA due-work scan and a ticket lookup by reference with 1,000,000 tickets.

Usage: python bench/sla.py [--url URL] [--count N] [--rounds R] [--goal-ms MS]

URL: a PostgreSQL server (default $MAILTRIAGE_TEST_DATABASE_URL); the benchmark
creates a database of its own there (``mailtriage_bench_sla_<pid>``), migrates it with
the project's Alembic migrations, generates the tickets with one ``generate_series``
INSERT (no ORM), ANALYZEs, and drops the database afterwards.

N tickets (``--count``, also ``--tickets``; default 1,000,000): a third closed (no
clock), the rest with ``sla_next_at`` / ``sla_due_at`` spread over 60 days around now
(so about half of the running ones are due).
Timed, R rounds each, median and p95 in milliseconds (goal: p95 < MS, default 50, each;
exit 1 when any figure misses it). The scan and the list are EXPLAINed as the code
builds them (``due_tickets_query``, ``ticket_list_query``):
  1. the due-work scan: the jobs' query (``store.sla_store.due_ticket_ids``: FOR
     UPDATE SKIP LOCKED, one batch of ``sla.batch_size``), in a transaction rolled back;
  2. a ticket lookup by reference (``DM-0xxxxx`` -> the ticket row), random tickets;
  3. ``tickets list --due`` (the first 50, with their article counts).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from mailtriage.app import App  # noqa: E402
from mailtriage.config import settings_from_dict  # noqa: E402
from mailtriage.store.models import Ticket, utcnow  # noqa: E402
from mailtriage.store.queries import (  # noqa: E402
    list_tickets,
    parse_ticket_number,
    ticket_list_query,
)
from mailtriage.store.sla_store import due_ticket_ids, due_tickets_query  # noqa: E402

GENERATE = """
INSERT INTO ticket (subject, status, level, priority, language, created_at, updated_at,
                    sla_first_response_due, sla_due_at, sla_next_at)
SELECT 'Ticket ' || g,
       CASE WHEN g % 3 = 0 THEN 'closed' WHEN g % 3 = 1 THEN 'open' ELSE 'waiting' END,
       CASE WHEN g % 5 = 0 THEN 'L2' ELSE 'L1' END,
       (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4],
       'de',
       now() - make_interval(secs => (g % 5184000)),
       now(),
       CASE WHEN g % 3 = 0 THEN NULL
            ELSE now() + make_interval(secs => ((g::bigint * 7919) % 5184000) - 2592000) END,
       CASE WHEN g % 3 = 0 THEN NULL
            ELSE now() + make_interval(secs => ((g::bigint * 7919) % 5184000) - 2592000) END,
       CASE WHEN g % 3 = 0 THEN NULL
            ELSE now() + make_interval(secs => ((g::bigint * 104729) % 5184000) - 2592000) END
FROM generate_series(1, :n) AS g
"""


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    fn()  # warm up (plan cache, buffers)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def explain(conn: sa.Connection, stmt: sa.Executable) -> list[str]:
    """The plan of ``stmt`` exactly as the code builds it (its own bound values)."""
    compiled = stmt.compile(dialect=conn.dialect)
    rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).scalars()
    return [str(line).strip() for line in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("MAILTRIAGE_TEST_DATABASE_URL", ""))
    ap.add_argument("--count", "--tickets", dest="tickets", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--goal-ms", type=float, default=50.0, help="p95 goal of each figure")
    args = ap.parse_args()
    if not args.url.startswith("postgresql"):
        print("bench/sla.py: give --url postgresql+psycopg://... (or set "
              "MAILTRIAGE_TEST_DATABASE_URL)", file=sys.stderr)  # fmt: skip
        return 2
    base = make_url(args.url)
    name = f"mailtriage_bench_sla_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        settings = settings_from_dict(
            {"database": {"url": url}, "storage": {"dir": str(ROOT / "var" / "bench-sla")}}
        )
        with App.from_settings(settings) as app:
            app.prepare_database()
            start = time.perf_counter()
            with app.engine.begin() as conn:
                conn.execute(sa.text(GENERATE), {"n": args.tickets})
            with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE ticket"))
            print(f"generated {args.tickets:,} tickets in {time.perf_counter() - start:.1f} s")
            now = utcnow()
            batch = settings.sla.batch_size
            with app.factory() as session:
                due = session.scalar(
                    sa.select(sa.func.count()).select_from(Ticket).where(Ticket.sla_next_at <= now)
                )
                running = sa.select(sa.func.count()).where(Ticket.sla_due_at.is_not(None))
                due_total = int(session.scalar(running) or 0)
            print(f"due now: {due:,} tickets (one scan takes a batch of {batch})")

            def scan() -> None:
                with app.factory() as session, session.begin():
                    ids = due_ticket_ids(session, now, batch)
                    assert len(ids) == min(batch, int(due or 0))
                    session.rollback()

            rng = random.Random(12)

            def lookup() -> None:
                number = f"DM-{rng.randint(1, args.tickets):06d}"
                with app.factory() as session:
                    ticket = session.get(Ticket, parse_ticket_number(number))
                    assert ticket is not None

            def due_list() -> None:
                with app.factory() as session:
                    rows = list_tickets(session, "DM", limit=50, due=True)
                    assert len(rows) == min(50, due_total)

            with app.engine.connect() as conn:
                for label, stmt in (
                    ("scan plan", due_tickets_query(now, batch)),
                    ("list plan", ticket_list_query(limit=50, due=True)),
                ):
                    print(f"{label}: " + " | ".join(explain(conn, stmt)))
            failed = False
            for label, fn in (
                ("due-work scan", scan),
                ("lookup by reference", lookup),
                ("tickets list --due (50)", due_list),
            ):
                median, p95 = timed(fn, args.rounds)
                ok = p95 < args.goal_ms
                failed |= not ok
                print(
                    f"{label:26s} median {median:7.2f} ms  p95 {p95:7.2f} ms  "
                    f"{'ok' if ok else f'over the {args.goal_ms:g} ms goal'}"
                )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
