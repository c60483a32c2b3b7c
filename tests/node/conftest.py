"""Shared fixtures for node tests: databases on both backends and ready-made networks.

``db_url`` (and ``make_db_url`` for several databases in one test) is parametrized over
SQLite and PostgreSQL, so every test that takes it runs on both. PostgreSQL tests use the
server at ``$TRIPWIRE_TEST_PG_URL`` (default the local trust-auth server, database
``test``), each database in a fresh schema that is dropped afterwards. They skip only when
no server listens there (and ``$TRIPWIRE_REQUIRE_PG`` is unset); a server that answers but
refuses them fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.net.process import free_ports

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LABS = ["alpha", "beta", "gamma"]


def pg_base_url() -> str:
    return os.environ.get("TRIPWIRE_TEST_PG_URL", PG_DEFAULT)


_pg_state: dict[str, str | None] = {}


def pg_unavailable_reason() -> str | None:
    """None when PostgreSQL answers; else why not (checked once per test session)."""
    if "reason" not in _pg_state:
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(pg_base_url(), connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as e:  # any failure to connect means "unavailable"
            _pg_state["reason"] = f"PostgreSQL at {pg_base_url()} is unreachable: {str(e).splitlines()[0]}"
    return _pg_state["reason"]


def _server_listens() -> bool:
    """Whether anything accepts TCP connections at the PostgreSQL URL's host and port."""
    import socket

    from sqlalchemy.engine import make_url

    url = make_url(pg_base_url())
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=3):
            return True
    except OSError:
        return False


def require_pg() -> None:
    """PostgreSQL is required wherever a server answers: a server that listens but refuses
    the tests (auth, missing database) fails them instead of skipping them quietly. Only a
    machine with no server at all skips, unless ``$TRIPWIRE_REQUIRE_PG`` says it must have one."""
    reason = pg_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("TRIPWIRE_REQUIRE_PG"):
        pytest.fail(f"{reason} (TRIPWIRE_REQUIRE_PG is set)")
    if _server_listens():
        pytest.fail(f"{reason} (a server listens there, so the PostgreSQL tests must run)")
    pytest.skip(reason)


class PgSchemas:
    """Creates fresh schemas and hands out URLs whose search_path points at them."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new_url(self) -> str:
        from sqlalchemy import create_engine, text

        name = "tw_" + uuid.uuid4().hex[:16]
        engine = create_engine(pg_base_url())
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
        self.created.append(name)
        sep = "&" if "?" in pg_base_url() else "?"
        return f"{pg_base_url()}{sep}options=-csearch_path%3D{name}"

    def drop_all(self) -> None:
        if not self.created:
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(pg_base_url())
        with engine.begin() as conn:
            for name in self.created:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test: ``sqlite`` or ``postgresql``."""
    if request.param == "postgresql":
        require_pg()
    return str(request.param)


@pytest.fixture
def make_db_url(db_backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty database URLs on the backend under test."""
    schemas = PgSchemas()
    counter = iter(range(1_000_000))

    def make() -> str:
        if db_backend == "sqlite":
            return f"sqlite:///{tmp_path / f'db{next(counter)}.sqlite'}"
        return schemas.new_url()

    yield make
    schemas.drop_all()


@pytest.fixture
def db_url(make_db_url: Callable[[], str]) -> str:
    """One fresh, empty database URL (SQLite file or PostgreSQL schema)."""
    return make_db_url()


@pytest.fixture
def network(tmp_path: Path, make_db_url: Callable[[], str]) -> Iterator[list]:
    """Three open homes (alpha, beta, gamma) on one network, genesis installed, one observer
    ``regulator`` (key via ``node.home.netsetup.observer_key(tmp_path / 'net', 'regulator')``);
    endpoints on free ports of 127.0.0.1; runs on both database backends."""
    from node.home.netsetup import create_network

    homes = create_network(
        tmp_path / "net",
        LABS,
        ports=free_ports(len(LABS)),
        observers=["regulator"],
        database_urls=[make_db_url() for _ in LABS],
    )
    yield homes
    for h in homes:
        h.close()


@pytest.fixture
def sqlite_network(tmp_path: Path) -> Iterator[list]:
    """Like ``network`` but SQLite only (for tests that need several processes on one home)."""
    from node.home.netsetup import create_network

    homes = create_network(tmp_path / "net", LABS, ports=free_ports(len(LABS)), observers=["regulator"])
    yield homes
    for h in homes:
        h.close()
