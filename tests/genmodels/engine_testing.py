"""Helpers for the engine and service tests: a backend whose steps the test releases,
and the service app on a real loopback port.

``Gate`` wraps the real NumPy backend; each ``step`` waits for a permit, so a test
decides exactly when the batch advances (no sleeps, no wall-clock assertions), and can
make a chosen step raise.
"""
from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web

from genmodels import engine as engine_mod
from genmodels.batch import NumpyBackend
from genmodels.engine import Engine
from genmodels.service import build_app

WAIT_S = 30.0  # generous: only reached when something is broken


class Gate:
    def __init__(self):
        self.permits = threading.Semaphore(0)
        self.open = False  # True: steps run freely
        self.fail_next = 0  # this many of the next steps raise
        self.steps = 0
        self.stepped = threading.Condition()

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.permits.release()

    def wait_steps(self, n: int) -> None:
        """Block until ``n`` steps in all have run."""
        with self.stepped:
            assert self.stepped.wait_for(lambda: self.steps >= n, WAIT_S), self.steps


class GatedBackend(NumpyBackend):
    def __init__(self, art, gate: Gate):
        super().__init__(art)
        self.gate = gate

    def step(self, ids, state):
        if not self.gate.open:
            assert self.gate.permits.acquire(timeout=WAIT_S), "test never released a step"
        if self.gate.fail_next:
            self.gate.fail_next -= 1
            raise RuntimeError("injected step failure")
        out = super().step(ids, state)
        with self.gate.stepped:
            self.gate.steps += 1
            self.gate.stepped.notify_all()
        return out


def install_gate(monkeypatch) -> Gate:
    """Every model loaded from now on steps only when the returned gate allows."""
    gate = Gate()
    monkeypatch.setattr(engine_mod, "make_backend", lambda art, name="auto": GatedBackend(art, gate))
    return gate


def wait_for(predicate, what: str = "condition") -> None:
    """Poll ``predicate`` (cheap) until true; fails after WAIT_S."""
    import time

    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class Server:
    """The service app on an ephemeral loopback port, inside the test's event loop."""

    def __init__(self, engine: Engine, book, secret: str | None = None):
        self.engine, self.book, self.secret = engine, book, secret

    async def __aenter__(self):
        self.runner = web.AppRunner(build_app(self.engine, self.book, self.secret),
                                    handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.http.close()
        await self.runner.cleanup()
        await asyncio.to_thread(self.engine.stop)

    async def post(self, body, raw: bytes | None = None, headers=None):
        kw = {"data": raw} if raw is not None else {"json": body}
        async with self.http.post(self.url + "/v1/generate", headers=headers, **kw) as r:
            return r.status, await r.json(content_type=None), r.headers

    async def get(self, path: str):
        async with self.http.get(self.url + path) as r:
            return r.status, await r.text()
