"""Fixtures: every storage test that takes ``backend`` runs on SQLite and on PostgreSQL.

PostgreSQL is ``STORAGE_TEST_PG_URL`` if set, else the local server (127.0.0.1:5432,
trust auth, database ``test``, user postgres or root, or root over the Unix socket).
Each test run works in its own schemas, dropped at the end, so runs never see each
other's rows. Without a server the PostgreSQL variants skip, saying why; under CI
(``CI`` set) they fail instead, because CI must test the real thing.

``session`` is the SQLAlchemy docs' recipe: a connection with an outer transaction, a
Session joined to it with savepoints, everything rolled back after the test. Tests of
concurrency need real commits across connections; they take ``committed`` (a migrated
database emptied after each test) instead.
"""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from storage.__main__ import upgrade
from storage.engine import make_engine, session_factory
from storage.models import Base

PG_CANDIDATES = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
    "postgresql+psycopg://root@/test?host=/var/run/postgresql",
)
BACKENDS = ("sqlite", "postgresql")


def _find_postgres() -> tuple[str | None, str]:
    """A URL that connects, or None and why not."""
    candidates = [os.environ["STORAGE_TEST_PG_URL"]] if os.environ.get(
        "STORAGE_TEST_PG_URL") else list(PG_CANDIDATES)
    errors = []
    for url in candidates:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return url, ""
        except Exception as exc:  # any driver failure means: try the next one
            errors.append(f"{make_url(url).render_as_string()}: "
                          f"{str(exc).splitlines()[0][:120]}")
        finally:
            engine.dispose()
    return None, "no PostgreSQL answered (" + "; ".join(errors) + ")"


class Databases:
    """Makes empty databases: SQLite files, or fresh schemas in the PostgreSQL one."""

    def __init__(self, tmp_dir, pg_url: str | None, why_no_pg: str):
        self.tmp_dir, self.pg_url, self.why_no_pg = tmp_dir, pg_url, why_no_pg
        self.schemas: list[str] = []

    def new(self, backend: str, name: str) -> str:
        tag = f"{name}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        if backend == "sqlite":
            return f"sqlite:///{self.tmp_dir / (tag + '.db')}"
        schema = f"st_{tag}"
        self._admin(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        url = make_url(self.pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for schema in self.schemas:
            self._admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.pg_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    pg_url, why = _find_postgres()
    dbs = Databases(tmp_path_factory.mktemp("storage"), pg_url, why)
    yield dbs
    if pg_url:
        dbs.drop_all()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, databases) -> str:
    if request.param == "postgresql" and databases.pg_url is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but {databases.why_no_pg}")
        pytest.skip(databases.why_no_pg)
    return request.param


@pytest.fixture()
def fresh_url(backend, databases) -> str:
    """An empty database (no tables) of the backend under test."""
    return databases.new(backend, "fresh")


@pytest.fixture(scope="session")
def migrated_url(backend, databases) -> str:
    """A database of the backend under test, migrated to head once per run."""
    url = databases.new(backend, "head")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(migrated_url):
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def session(engine):
    """A Session whose work, commits included, is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture()
def committed(engine):
    """A session factory whose commits are real; every table is emptied afterwards."""
    yield session_factory(engine)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def make_record(**overrides):
    """A RequestRecord for a successful /austen request, with ``overrides`` applied."""
    from storage.records import RequestRecord
    values = dict(platform="telegram", user_external_id="42", chat_external_id="-100",
                  user_name="Ann", chat_title="Readers", command="austen", style="austen",
                  prime="It is a truth", temperature=0.7, top_k=0, top_p=1.0, seed=7,
                  max_chars=600, model_version="austen-20261122T080000-ab12",
                  latency_ms=120, text=" universally acknowledged.", stop_reason="stop")
    values.update(overrides)
    return RequestRecord(**values)


@pytest.fixture()
def record():
    """``record(**overrides)`` -> a RequestRecord for an ok /austen request."""
    return make_record
