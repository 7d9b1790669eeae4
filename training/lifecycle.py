"""Keeping a training run's processes and its row honest when the scheduler dies.

    proc = subprocess.Popen(cmd, preexec_fn=die_with_parent())   # child dies with us
    with Heartbeat(sessions, run_id, every_s=5.0, on_lost=stop_child):  # the run's lease
        ...train...

``die_with_parent`` asks Linux (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the child
as soon as its parent goes, even by ``kill -9``, when no cleanup code can run: an
orphaned training would hold a core and its scratch folder for its whole budget. Linux
sends the signal when the *thread* that started the child ends; the scheduler starts
children from its worker threads, and a training worker (training/worker.py) from its
one Dramatiq thread, which live as long as the process does. Elsewhere it is a no-op.

``Heartbeat`` refreshes ``training_runs.heartbeat_at`` from a thread while the run goes
on; whoever finds the heartbeat older than ``registry_ops.LEASE_SECONDS`` fails the run
(``registry_ops.fail_stale``), and a training worker finding it older than ``[queue]
lease_seconds`` takes the run over as its next attempt (``training.worker.claim``). So
a process that cannot renew its lease for that long, cut off from the database, or
finds the run no longer running its attempt, has lost the run: ``on_lost`` is called
(the retrainer ends its child) and the process must record and publish nothing.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from training import registry_ops

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded before any fork: the child must not load a library between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when this process dies (Linux)."""
    if _LIBC is None:
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


class LeaseLost(Exception):
    """This process no longer holds the run it was training (``Heartbeat``)."""


class Heartbeat:
    """A thread renewing one attempt's lease on a run every ``every_s`` seconds while in
    ``with``; ``on_lost()`` is called once (from that thread) if the lease is lost."""

    def __init__(self, sessions: sessionmaker[Session], run_id: int, every_s: float,
                 attempt: int = 1, lease_s: float = registry_ops.LEASE_SECONDS,
                 on_lost: Callable[[], None] | None = None):
        self.sessions, self.run_id, self.every_s = sessions, run_id, every_s
        self.attempt, self.lease_s, self.on_lost = attempt, lease_s, on_lost
        self.lost = threading.Event()
        self.why = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"heartbeat-run-{run_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def confirm(self, session: Session) -> None:
        """Renew the lease inside the caller's transaction (publishing), or raise
        ``LeaseLost``: whoever took the run over waits on that row until it commits."""
        if self.lost.is_set() or not registry_ops.beat(session, self.run_id, self.attempt):
            self._lose("the run is no longer this attempt's")
            raise LeaseLost(self.why)

    def _lose(self, why: str) -> None:
        if self.lost.is_set():
            return
        self.why = f"run {self.run_id} lost (attempt {self.attempt}): {why}"
        self.lost.set()
        log.warning("%s; its training is ended and nothing of it is recorded", self.why)
        if self.on_lost is not None:
            self.on_lost()

    def _loop(self) -> None:
        failing, renewed = False, time.monotonic()
        while not self._stop.wait(self.every_s):
            try:
                with self.sessions.begin() as s:
                    if not registry_ops.beat(s, self.run_id, self.attempt):
                        # Finished, failed as stale, or taken over by another worker.
                        self._lose("the run is no longer this attempt's")
                        return
                failing, renewed = False, time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the next beat may get through
                if not failing:
                    log.warning("run %s: heartbeat not stored (%s)", self.run_id, exc)
                failing = True
                if time.monotonic() - renewed >= self.lease_s:
                    self._lose(f"no heartbeat stored for {self.lease_s:g} s, so another "
                               f"process may have taken the run over")
                    return
