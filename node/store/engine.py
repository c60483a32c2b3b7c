"""Opening the store's database: one job, an engine on a schema this release can use.

:func:`create_engine_for` builds the SQLAlchemy engine for a ``sqlite:///PATH`` (WAL, full
sync, ``BEGIN IMMEDIATE`` on request) or ``postgresql+psycopg://`` URL;
:func:`check_schema` and :func:`migrate_schema` hold that database to the newest Alembic
migration; :func:`safe_url`, :func:`db_reason` and :func:`is_transient` turn URLs and
driver errors into what the store says and whether it retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from node.errors import SchemaVersionError, StoreError
from protocol.errors import TripwireError

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine_for(url: str) -> Engine:
    try:
        u = make_url(url)
    except Exception as e:
        raise StoreError(f"invalid database URL {url!r}: {e}") from e
    backend = u.get_backend_name()
    if backend == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            parent = Path(db).parent
            if not parent.is_dir():
                raise StoreError(f"cannot open database {url}: directory {parent} does not exist")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if not db or db == ":memory:":
            kwargs["poolclass"] = StaticPool
        engine = create_engine(u, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take over transaction control from the driver so BEGIN IMMEDIATE is possible.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # FULL: a commit survives power loss too, not only a killed process (WAL+NORMAL
            # would do for SIGKILL); one fsync per batch keeps this cheap.
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("tripwire_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if backend == "postgresql":
        if u.get_driver_name() in ("", "psycopg2"):
            u = u.set(drivername="postgresql+psycopg")
        # No pre-ping (a round trip per checkout on the ingest path): a connection found dead
        # invalidates the pool and the write is retried (see is_transient).
        return create_engine(u, pool_recycle=3600)
    raise StoreError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://...")


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def db_reason(e: Exception) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip().splitlines()
    return text[0] if text else type(e).__name__


def is_transient(e: DBAPIError) -> bool:
    if isinstance(e, IntegrityError) or e.connection_invalidated:
        # A dropped pooled connection (server restart) is replaced on the next attempt.
        return True
    text = str(getattr(e, "orig", e)).lower()
    return any(
        s in text for s in ("database is locked", "deadlock", "could not serialize", "busy", "lock timeout")
    )


# --- schema --------------------------------------------------------------------------


def alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _schema_state(conn: Connection, url: str) -> tuple[str | None, str]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head() or ""
    current = MigrationContext.configure(conn).get_current_revision()
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise SchemaVersionError(
            f"database {safe_url(url)} is at schema revision {current}, which this version of "
            "Tripwire does not know: it was migrated by a newer release"
        )
    return current, head


def check_schema(engine: Engine, url: str) -> None:
    """Refuse a database that is not at the newest migration (``url`` names it in errors)."""
    try:
        with engine.connect() as conn:
            current, head = _schema_state(conn, url)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot open database {safe_url(url)}: {db_reason(e)}") from e
    if current != head:
        raise StoreError(f"database {safe_url(url)} is at revision {current}, expected {head}: migrate it")


def migrate_schema(engine: Engine, url: str) -> None:
    """Bring the database to the newest migration (``url`` names it in errors)."""
    from alembic import command

    try:
        with engine.connect() as conn:
            current, head = _schema_state(conn, url)
            conn.rollback()
        if current == head:
            return
        with engine.connect() as conn:
            conn.execution_options(tripwire_begin="IMMEDIATE")
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # Two processes starting on a fresh database must not both migrate.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7401290412)")
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except TripwireError:
        raise
    except SQLAlchemyError as e:
        raise StoreError(f"cannot open database {safe_url(url)}: {db_reason(e)}") from e
