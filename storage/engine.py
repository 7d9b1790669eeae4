"""Which database, and how to connect: URL resolution, engines, session factories.

The URL comes from ``DATABASE_URL`` in the environment, else ``[database] url`` in
config.toml (``BOT_CONFIG`` names another file), else the embedded SQLite file
``var/stylebot.db``. Relative SQLite paths are relative to the config file.

    python -m storage url        # the URL in use, password hidden

SQLite is tuned for a chat bot that shares the file with a scheduler process:
WAL (readers never block the writer), foreign keys on (SQLite ships them off), a busy
timeout (wait for a lock instead of failing at once), ``synchronous=NORMAL`` (in WAL
this survives an application crash; only a power cut can lose the last commits) and
``BEGIN IMMEDIATE`` (take the write lock at the start of a transaction: a deferred
transaction that reads then writes can fail with "database is locked" at once, without
waiting, when another connection wrote in between).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

import settings
from settings import ConfigError
from storage.errors import StorageConfigError

ROOT = settings.ROOT  # the repository (storage's CLI finds alembic.ini there)
BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5


def config_path() -> Path:
    return settings.config_path()


def database_url(env: Mapping[str, str] | None = None, config: Path | None = None) -> str:
    """The URL to use: ``DATABASE_URL``, else config.toml ``[database] url``, else SQLite."""
    environ = os.environ if env is None else env
    config = config or config_path()
    if environ.get("DATABASE_URL"):
        return normalise_url(environ["DATABASE_URL"], config.parent, "DATABASE_URL")
    try:  # the whole file is checked: a typo anywhere stops the program here too
        raw = settings.load(config, missing_ok=True).database.url
    except ConfigError as exc:
        raise StorageConfigError(str(exc)) from None
    return normalise_url(raw, config.parent, "database.url")


def normalise_url(raw: str, base_dir: Path, key: str) -> str:
    """Pick our drivers and make SQLite paths absolute; ``key`` names the source in errors."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise StorageConfigError(f"{key}: cannot parse {raw!r} as a database URL") from None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        # psycopg 3 is the driver we install; "postgres://" is what hosting services hand out.
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend != "sqlite":
        raise StorageConfigError(f"{key}: {backend!r} is not supported; use sqlite or "
                                 "postgresql")
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        path = Path(url.database)
        url = url.set(database=str(path if path.is_absolute() else base_dir / path))
    return url.render_as_string(hide_password=False)


def describe(url: str | URL) -> str:
    """The URL for log lines: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                statement_timeout_ms: int | None = None, **kwargs) -> Engine:
    """An engine for ``url`` with our SQLite pragmas or PostgreSQL timeouts.

    ``statement_timeout_ms`` (PostgreSQL) also bounds waiting for a lock; None leaves
    statements unbounded (migrations may legitimately run long).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000},
                               **kwargs)
        _tune_sqlite(engine, busy_timeout_ms)
        return engine
    connect_args: dict[str, int | str] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    if statement_timeout_ms is not None:
        # Appended to the URL's own options (e.g. a search_path), which connect_args
        # would otherwise replace.
        own = parsed.query.get("options", "")
        connect_args["options"] = " ".join(filter(None, (
            own if isinstance(own, str) else " ".join(own),
            f"-c statement_timeout={statement_timeout_ms}",
            f"-c lock_timeout={statement_timeout_ms}")))
    kwargs.setdefault("pool_pre_ping", True)  # survive a PostgreSQL restart
    return create_engine(url, connect_args=connect_args, **kwargs)


def _tune_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event (below) start transactions, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON",
                       f"busy_timeout={busy_timeout_ms}", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows returned from a unit of work stay readable after it
    # commits in the worker thread and is handed back to the event loop.
    return sessionmaker(engine, expire_on_commit=False)
