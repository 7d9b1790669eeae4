"""Database work off the event loop: a sync SQLAlchemy engine behind a thread executor.

    db = Database()                         # URL from DATABASE_URL / config.toml
    logged = await db.log_request(record)   # never raises for an outage: spools instead
    await db.run(rate, generation_id, user_id, +1)   # any repository function
    db.close()

Why a thread executor and not SQLAlchemy's asyncio extension: the repository functions
are plain ``fn(session, ...)`` and serve the asyncio chat process and the synchronous
callers alike (training, APScheduler jobs, CLIs, Alembic, tests). The asyncio extension
would need a second async copy of each, plus greenlet and aiosqlite/asyncpg; and
aiosqlite runs sqlite3 in a thread anyway, so for the default backend it is the same
mechanism with more layers. A thread hop costs tens of microseconds against a chat
request's hundreds of milliseconds of sampling.

SQLite gets one worker: it allows one writer at a time anyway, and one worker queues
our writes in order instead of having them sleep on the busy lock. PostgreSQL gets
``workers`` threads and a connection pool of the same size.

Errors: a database that cannot be reached or stays locked is retried a few times with
backoff, then raises ``StorageUnavailable`` (one log line); a constraint violation
becomes ``InvalidInput``. ``fn`` must be database work only, safe to run again. Every
wait is bounded: SQLite's busy timeout, and on PostgreSQL the connect timeout, the
pool's checkout timeout and a statement (and lock) timeout of a few seconds.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    TimeoutError as PoolTimeout,
)

from storage.engine import (
    BUSY_TIMEOUT_MS,
    PG_CONNECT_TIMEOUT_S,
    ROOT,
    database_url,
    describe,
    make_engine,
    session_factory,
)
from storage.errors import InvalidInput, StorageUnavailable
from storage.log import Logged, log_request
from storage.records import RequestRecord
from storage.spool import Spool

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_SPOOL = ROOT / "var" / "spool" / "requests.jsonl"
BACKOFF_S = (0.05, 0.25, 1.0)
STATEMENT_TIMEOUT_MS = 5000  # PostgreSQL: a statement, or a wait for a lock, at most this
MAX_CACHED_IDS = 10_000


def _reason(exc: DBAPIError | PoolTimeout) -> str:
    """The driver's message, first line only (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


class Database:
    """An engine, a session factory and the executor that runs units of work."""

    def __init__(self, url: str | None = None, *, workers: int = 4, retries: int = 2,
                 spool: str | Path | None = DEFAULT_SPOOL,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS):
        self.url = url or database_url()
        sqlite = make_url(self.url).get_backend_name() == "sqlite"
        workers = 1 if sqlite else workers
        kwargs = ({"busy_timeout_ms": busy_timeout_ms} if sqlite
                  else {"pool_size": workers, "max_overflow": 0,
                        "pool_timeout": PG_CONNECT_TIMEOUT_S,
                        "statement_timeout_ms": statement_timeout_ms})
        self.engine = make_engine(self.url, **kwargs)
        self.sessions = session_factory(self.engine)
        self.retries = min(retries, len(BACKOFF_S))
        self.spool = Spool(spool) if spool is not None else None
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="storage")
        self._ids: dict[tuple, int] = {}  # see _log_with_known_ids; used on the loop only

    def __repr__(self) -> str:
        return f"Database({describe(self.url)})"

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.run_sync, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """The same, on the calling thread (for synchronous callers)."""
        for attempt in range(self.retries + 1):
            try:
                with self.sessions.begin() as session:
                    return fn(session, *args, **kwargs)
            except (OperationalError, PoolTimeout) as exc:  # unreachable, locked, timed out
                if attempt == self.retries:
                    raise self._unavailable(exc, attempt + 1) from None
                time.sleep(BACKOFF_S[attempt])
            except ProgrammingError as exc:  # tables missing: not migrated yet
                raise self._unavailable(exc, attempt + 1) from None
            except (IntegrityError, DataError) as exc:
                raise InvalidInput(f"refused by the database: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    def _unavailable(self, exc: DBAPIError | PoolTimeout, tries: int) -> StorageUnavailable:
        log.error("database %s unavailable after %d tries: %s", describe(self.url), tries,
                  _reason(exc))
        return StorageUnavailable(f"database unavailable: {_reason(exc)}")

    async def log_request(self, record: RequestRecord) -> Logged | None:
        """Log a request; during an outage spool it to disk instead and return None.

        Spooled records are stored by the next successful call or by ``replay_spool``.
        ``InvalidInput`` (a bug in the caller, not an outage) is raised, not spooled.
        """
        record.checked()
        try:
            logged = await self._log_with_known_ids(record)
        except StorageUnavailable as exc:
            if self.spool is None:
                raise
            try:
                await asyncio.to_thread(self.spool.append, record)
            except OSError as disk:
                log.error("request %s NOT logged: database unavailable (%s) and spool "
                          "%s unwritable (%s)", record.uid, exc, self.spool.path, disk)
                raise exc from disk
            log.warning("request %s spooled to %s (%s); it will be stored when the "
                        "database is back", record.uid, self.spool.path, exc)
            return None
        if self.spool is not None and self.spool.pending():
            try:
                await self.replay_spool()
            except Exception:  # this request is stored; a replay problem must not undo that
                log.exception("spool replay failed; the spool is kept for the next try")
        return logged

    async def _log_with_known_ids(self, record: RequestRecord) -> Logged:
        # Users and chats seen before skip two lookups (two round trips on PostgreSQL).
        # Ids enter the cache only after their transaction committed, and the rows are
        # never deleted; should one vanish anyway (a restored backup), the foreign key
        # refuses the insert and we retry once the slow way.
        user_key = ("user", record.platform, record.user_external_id, record.user_name)
        chat_key = ("chat", record.platform, record.chat_external_id, record.chat_title)
        known = {"user_id": self._ids.get(user_key), "chat_id": self._ids.get(chat_key)}
        try:
            logged = await self.run(log_request, record, **known)
        except InvalidInput:
            if known == {"user_id": None, "chat_id": None}:
                raise
            self._ids.clear()
            logged = await self.run(log_request, record)
        if len(self._ids) > MAX_CACHED_IDS:
            self._ids.clear()
        self._ids[user_key], self._ids[chat_key] = logged.user_id, logged.chat_id
        return logged

    async def replay_spool(self) -> tuple[int, int]:
        """Store spooled requests; (stored, still waiting)."""
        if self.spool is None:
            return 0, 0
        loop = asyncio.get_running_loop()
        store = functools.partial(self.run_sync, log_request)
        done, left = await loop.run_in_executor(self._executor, self.spool.replay, store)
        if done or left:
            log.info("spool replay: %d stored, %d still waiting", done, left)
        return done, left

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the database answers."""
        await self.run(lambda session: session.execute(text("SELECT 1")).scalar_one())

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.to_thread(self.close)

