"""Leader election in the database: of N processes sharing one database, one leads.

    leader = Leadership(url, "scheduler")
    while True:
        if leader.keep():      # acquire, or confirm we still lead; never blocks long
            ...do the leader's work for a while...
        time.sleep(leader.every_s)
    leader.close()             # step down at once (others take over within every_s)

The training scheduler uses it (training/scheduler.py): every scheduler process calls
``keep()`` every ``every_s`` seconds; the one it returns True for runs the jobs, the
others wait and run nothing.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a
dedicated connection. The server frees it the moment that connection ends, so a
process killed by ``kill -9`` frees it at once and a follower takes over at its next
``keep()``; a machine that vanishes frees it once TCP keepalives give up on it (about
20 s, set on the connection below). While leading, ``keep()`` only checks that the
connection is alive: locks are never released otherwise. The key is derived from the
role's name, the database and the schema, so two deployments sharing a server (or the
tests, one schema each) do not exclude each other.

SQLite (one machine): a row in ``leader_leases`` with the holder and an expiry, taken
or renewed in one ``BEGIN IMMEDIATE`` transaction (so two processes cannot both take
it) when it is free, expired or already ours. A dead leader's row expires after
``lease_s``; ``close()`` deletes it so a clean stop hands over at once. A leader that
cannot renew steps down by itself when its own lease runs out, measured from before
its last renewal started, so it never believes it leads after a follower may have
taken over (one machine, one clock). With ``reclaim_dead=True`` a lease whose holder
was a process on this host that no longer runs is taken at once instead of after
``lease_s``: what a restart after ``kill -9`` needs when the caller refuses to wait
(the Telegram poller's lock, bot/adapters/telegram_polling.py).

``error`` says why the last ``keep()`` failed when the database, not another holder,
kept us from leading (None otherwise).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import time
import uuid

from sqlalchemy import Connection, NullPool, create_engine, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from storage.engine import PG_CONNECT_TIMEOUT_S, make_engine, session_factory
from storage.models import LeaderLease, utcnow

log = logging.getLogger(__name__)
LEASE_S = 15.0  # SQLite: a silent leader is replaced after this long
EVERY_S = 3.0  # how often to call keep(): renewal (leader) and takeover (follower) delay
# libpq settings for the lock's connection: a vanished leader's lock is freed once the
# server's TCP keepalives give up, and our own checks fail instead of hanging.
PG_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5,
                "keepalives_count": 3, "tcp_user_timeout": 20_000,
                "connect_timeout": PG_CONNECT_TIMEOUT_S}


class Leadership:
    """One process's claim to lead ``name`` on the database at ``url``."""

    def __init__(self, url: str, name: str, *, lease_s: float = LEASE_S,
                 every_s: float = EVERY_S, reclaim_dead: bool = False):
        if not 0 < every_s < lease_s:
            raise ValueError("every_s must be positive and shorter than lease_s")
        self.url, self.name, self.lease_s, self.every_s = url, name, lease_s, every_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.postgres = make_url(url).get_backend_name() == "postgresql"
        self.engine = (create_engine(url, poolclass=NullPool, connect_args=PG_KEEPALIVE)
                       if self.postgres else make_engine(url))
        self._conn: Connection | None = None  # PostgreSQL: the connection holding the lock
        self._until = float("-inf")  # SQLite: our lease's end, by time.monotonic()
        self.leading = False
        self.reclaim_dead = reclaim_dead
        self.error: str | None = None  # the database problem behind the last False

    def keep(self) -> bool:
        """Take the lead if it is free, or confirm we still have it; whether we lead.

        Never raises for a database problem: that counts as not leading (logged)."""
        self.error = None
        try:
            self.leading = self._keep_pg() if self.postgres else self._keep_sqlite()
        except DBAPIError as exc:
            self.error = (str(exc.orig).strip().splitlines() or ["?"])[0]
            if self.leading:
                log.warning("%s: leadership lost: %s", self.name,
                            (str(exc.orig).strip().splitlines() or ["?"])[0])
            self._drop_connection()
            self.leading = False
        return self.leading

    def _keep_pg(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        conn = self._conn
        if self.leading:  # the lock lives as long as this connection does
            conn.execute(text("SELECT 1"))
            conn.commit()
            return True
        where = conn.execute(text("SELECT current_database(), current_schema()")).one()
        digest = hashlib.sha256(f"stylebot:{self.name}:{where[0]}:{where[1]}".encode())
        key = int.from_bytes(digest.digest()[:8], "big", signed=True)
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                   .scalar_one())
        conn.commit()  # a session-level lock outlives the transaction
        return got

    def _keep_sqlite(self) -> bool:
        started = time.monotonic()
        with session_factory(self.engine).begin() as s:  # BEGIN IMMEDIATE: one at a time
            now = utcnow()
            row = s.get(LeaderLease, self.name)
            if (row is not None and row.holder != self.holder and row.expires_at > now
                    and not (self.reclaim_dead and dead_here(row.holder))):
                return False
            until = now + dt.timedelta(seconds=self.lease_s)
            if row is None:
                s.add(LeaderLease(name=self.name, holder=self.holder, expires_at=until))
            else:
                row.holder, row.expires_at = self.holder, until
        self._until = started + self.lease_s
        return True

    def still_leading(self) -> bool:
        """Without asking the database: False once a SQLite lease ran out unrenewed."""
        return self.leading and (self.postgres or time.monotonic() < self._until)

    def close(self) -> None:
        """Step down (others may take over at their next ``keep()``) and disconnect."""
        if self.leading and not self.postgres:
            try:
                with session_factory(self.engine).begin() as s:
                    s.execute(delete(LeaderLease).where(LeaderLease.name == self.name,
                                                        LeaderLease.holder == self.holder))
            except DBAPIError as exc:  # it expires by itself anyway
                log.warning("%s: lease not released: %s", self.name, exc)
        self.leading = False
        self._drop_connection()
        self.engine.dispose()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # ends the session: the server frees its locks
            except DBAPIError:
                pass
            self._conn = None


def dead_here(holder: str) -> bool:
    """Whether ``holder`` (host:pid:nonce) names a process of this host that is gone."""
    host, pid, _ = (holder.rsplit(":", 2) + ["", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: only its lease's expiry tells
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
