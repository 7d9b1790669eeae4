"""The inference replicas the HTTP client spreads its requests over.

``Replicas(urls)`` keeps, per service URL, the requests it has outstanding and whether
it is ready. ``pick()`` chooses the ready replica with the fewest outstanding requests
(ties go round in turn, so sequential requests are spread too). With two or more
replicas a background task asks every replica's ``GET /healthz`` (the service's
readiness: 200 only when every style is loaded and its loop runs) every ``every_s``
seconds with a short timeout; any other answer, or none, takes the replica out until a
check passes again. ``mark_down`` takes a replica out at once, for a connection that
failed in the middle of a request, without waiting for the next check.

A single URL is the zero-setup case: it is never checked and always picked, so one
service behaves as before replicas existed (a service whose /healthz says 503 because
one style has no model still answers the styles it has).

    replicas = Replicas(["http://10.0.0.1:8081", "http://10.0.0.2:8081"])
    await replicas.ready()                 # first use: one round of checks, then in the background
    replica = replicas.pick()              # None: no replica is ready
    with replicas.busy(replica): ...       # counts it as outstanding while the request runs
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0  # how soon a replica that came back gets traffic again
CHECK_TIMEOUT_S = 1.0  # a replica slower than this to say "ready" counts as not ready


@dataclass(eq=False)
class Replica:
    url: str
    outstanding: int = 0  # requests sent and not yet answered
    ready: bool = False
    epoch: int = 0  # bumped by mark_down: a check begun before it must not undo it
    picked: int = 0  # requests sent to it in all (for logs and tests)


class Replicas:
    def __init__(self, urls: list[str], *, every_s: float = CHECK_EVERY_S,
                 timeout_s: float = CHECK_TIMEOUT_S):
        if not urls:
            raise ValueError("at least one inference URL is needed")
        self.all = [Replica(url.rstrip("/")) for url in urls]
        self.checked = len(self.all) > 1  # one replica: always used, never checked
        if not self.checked:
            self.all[0].ready = True
        self.every_s, self.timeout_s = every_s, timeout_s
        self.retried = 0  # requests sent again to another replica after a connection failure
        self._turn = 0
        self._task: asyncio.Task | None = None
        self._first_round: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self.all)

    def pick(self, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        """The ready replica (not in ``exclude``) with the fewest outstanding requests."""
        n = len(self.all)
        candidates = [i for i, r in enumerate(self.all) if r.ready and r not in exclude]
        if not candidates:
            return None
        best = min(candidates,
                   key=lambda i: (self.all[i].outstanding, (i - self._turn) % n))
        self._turn = best + 1
        return self.all[best]

    @contextlib.contextmanager
    def busy(self, replica: Replica) -> Iterator[Replica]:
        replica.outstanding += 1
        replica.picked += 1
        try:
            yield replica
        finally:
            replica.outstanding -= 1

    def mark_down(self, replica: Replica, why: object) -> None:
        """Out of the rotation until a readiness check passes again."""
        replica.epoch += 1
        if replica.ready and self.checked:
            log.warning("inference replica %s is down (%s); using the others",
                        replica.url, why or type(why).__name__)
        replica.ready = not self.checked  # a lone replica is still the only one to try

    async def ready(self) -> None:
        """Start the background checks in this event loop (once) and wait for their first
        round, so the first request already knows which replicas are ready."""
        if not self.checked:
            return
        if self._task is None or self._task.done():
            self._first_round = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._check_forever(self._first_round), name="inference-readiness")
        assert self._first_round is not None
        await self._first_round.wait()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _check_forever(self, first_round: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        # Its own small pool: checks must not wait behind generations for a connection.
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.gather(*(self._check(session, r) for r in self.all))
                first_round.set()
                await asyncio.sleep(self.every_s)

    async def _check(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        epoch = replica.epoch
        try:
            async with session.get(replica.url + "/healthz") as resp:
                ok, why = resp.status == 200, f"/healthz answered {resp.status}"
        except Exception as exc:  # refused, timed out, garbled: not ready, and checks go on
            ok, why = False, f"/healthz: {exc or type(exc).__name__}"
        if epoch != replica.epoch:  # marked down while this check ran: the next one decides
            return
        if ok and not replica.ready:
            log.info("inference replica %s is ready", replica.url)
        elif replica.ready and not ok:
            log.warning("inference replica %s is not ready (%s); using the others",
                        replica.url, why)
        replica.ready = ok
