"""Engine, sessions and migrations."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.store.write_gate import GatedConnection, GateTimeout, WriteGate, gate_for

ENV_MIGRATIONS_DIR = "MAILTRIAGE_MIGRATIONS_DIR"


class DatabaseError(Exception):
    """The database cannot be used (unreachable, bad URL, schema out of date)."""


def make_engine(url: str, *, echo: bool = False, durable: bool = True) -> Engine:
    """``durable``: SQLite commits reach the disk before they return (synchronous=FULL);
    only tests and benchmarks that also skip the blob fsync turn it off."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"database.url: not a database URL: {url!r} ({exc})") from None
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "factory": GatedConnection}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # A server that does not answer (network gone) must not hang /readyz,
            # the worker or a command for minutes: libpq waits forever by default.
            kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # missing driver and the like: a user error, one line
        raise DatabaseError(
            f"database.url: cannot use {parsed.render_as_string()}: {exc}"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas_full if durable else _sqlite_pragmas)
        gate = write_gate(engine)
        if gate is None:
            event.listen(engine, "begin", _sqlite_begin_immediate)
        else:

            def begin_after_intake(conn: Any) -> None:
                dbapi_conn: GatedConnection = conn.connection.dbapi_connection  # the factory's
                try:
                    gate.hold(dbapi_conn)  # until this transaction's commit or rollback
                except GateTimeout as exc:
                    # what SQLAlchemy makes of "database is locked": every caller already
                    # treats it as the database being unavailable for now
                    raise OperationalError("BEGIN (write gate)", None, exc) from None
                try:
                    _sqlite_begin_immediate(conn)
                except BaseException:
                    dbapi_conn.release_gate()
                    raise

            event.listen(engine, "begin", begin_after_intake)
    return engine


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database (None: in memory, or not SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def write_gate(engine: Engine) -> WriteGate | None:
    """The intake-first gate of a SQLite database file (None: another database)."""
    database = sqlite_file(engine)
    return None if database is None else gate_for(database)


def _sqlite_pragmas_full(dbapi_conn: Any, record: Any) -> None:
    # In WAL mode, synchronous=NORMAL may lose the last commits on a power loss: an
    # inbound row whose 250 was already sent would be gone. FULL syncs the WAL on
    # every commit; commits are grouped (SMTP group commit, one per worker job).
    _sqlite_pragmas(dbapi_conn, record, synchronous="FULL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "NORMAL") -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN: two processes that both read and then write would
    # otherwise deadlock-fail with "database is locked" instead of waiting.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def migrations_dir() -> Path:
    """Where the Alembic scripts live: $MAILTRIAGE_MIGRATIONS_DIR, the source tree, cwd."""
    candidates = []
    if os.environ.get(ENV_MIGRATIONS_DIR):
        candidates.append(Path(os.environ[ENV_MIGRATIONS_DIR]))
    candidates.append(Path(__file__).resolve().parents[3] / "migrations")
    candidates.append(Path.cwd() / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").exists():
            return candidate
    raise DatabaseError(
        f"migrations directory not found (looked in {', '.join(map(str, candidates))}); "
        f"set {ENV_MIGRATIONS_DIR}"
    )


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def script_heads(directory: Path | None = None) -> set[str]:
    """The head revisions of the migration scripts, read from their source with ``ast``
    (importing Alembic alone takes longer than a whole start-up should)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((directory or migrations_dir()).glob("versions/*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            targets: list[ast.expr]
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            elif isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(value)
        rev, down = values.get("revision"), values.get("down_revision")
        if isinstance(rev, str):
            revisions.add(rev)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):
            parents.update(str(d) for d in down)
    return revisions - parents


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the head revision: one query, no Alembic import.
    False also when that cannot be told (no version table yet, unreachable)."""
    heads = script_heads()
    if len(heads) != 1:
        return False
    try:
        with engine.connect() as conn:
            stored = set(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    except DBAPIError as exc:
        if isinstance(exc.orig, GateTimeout):  # it can be told, just not now
            raise unavailable(exc) from None
        return False
    return stored == heads


def unavailable(exc: DBAPIError) -> DatabaseError:
    """The one-line error for a database that cannot be used now: busy past the write
    gate's wait (SQLite), or not reachable at all."""
    what = "database error" if isinstance(exc.orig, GateTimeout) else "database unreachable"
    return DatabaseError(f"{what}: {_first_line(exc)}")


def prepare(engine: Engine) -> None:
    """Bring the schema to the head revision, as cheaply as possible: nothing when it
    is current (one query); a database without any table gets the models' tables and
    the head revision in one transaction (``tests/test_migrations.py`` checks that
    this is exactly the migrated schema, names included), which spares a new
    database the import of Alembic; anything else goes through the migrations."""
    if schema_is_current(engine):
        return
    try:
        if _create_if_empty(engine):
            return
    except OperationalError as exc:
        raise unavailable(exc) from None
    upgrade(engine)


def _create_if_empty(engine: Engine) -> bool:
    heads = script_heads()
    if len(heads) != 1:
        return False
    # Importing the store package (this module's) registered every table on Base.
    from mailtriage.store.models import Base

    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so a second instance waits
        if inspect(conn).get_table_names():
            return False
        Base.metadata.create_all(conn)
        # The table Alembic keeps its revision in, as Alembic makes it.
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute(
            text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": heads.pop()}
        )
    return True


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply pending migrations (safe to run from several instances: DDL is transactional
    on PostgreSQL and serialised by the write lock on SQLite). Returns at once when the
    schema is current."""
    if revision == "head" and schema_is_current(engine):
        return
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), revision)
    except OperationalError as exc:
        raise unavailable(exc) from None


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def check_schema(engine: Engine) -> None:
    """Raise DatabaseError unless the schema is at the newest migration."""
    if schema_is_current(engine):
        return
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise unavailable(exc) from None
    head = head_revision(engine)
    if current != head:
        raise DatabaseError(
            f"database schema is at {current or 'nothing'}, code expects {head}: "
            "run `mailtriage db upgrade`"
        )


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
