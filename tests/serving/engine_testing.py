"""Helpers for the engine and service tests: a backend whose steps the test releases,
and the service app on a real loopback port (served as ``python -m serving``
serves it: ``service_http.start_site``, its timeouts and connection limit).

``Gate`` wraps the real NumPy backend; each ``step`` waits for a permit, so a test
decides exactly when the batch advances (no sleeps, no wall-clock assertions), and can
make a chosen step raise.
"""
from __future__ import annotations

import asyncio
import json
import threading

import aiohttp

from serving import engine as engine_mod
from serving.batch import NumpyBackend
from serving.engine import Engine
from serving.service import build_app
from serving.service_http import Limits, start_site

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


GATES: list[Gate] = []  # installed during the current test; conftest opens them after it


def open_gates() -> None:
    """Let every step held by a gate of the test that just ended run freely, so an engine
    thread it left waiting finishes now instead of failing (and logging) during a later
    test."""
    while GATES:
        gate = GATES.pop()
        gate.open, gate.fail_next = True, 0
        gate.release(1000)


def install_gate(monkeypatch) -> Gate:
    """Every model loaded from now on steps only when the returned gate allows."""
    gate = Gate()
    GATES.append(gate)
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

    def __init__(self, engine: Engine, book, secret: str | None = None,
                 limits: Limits = Limits()):
        self.engine, self.book, self.secret, self.limits = engine, book, secret, limits

    async def __aenter__(self):
        app = build_app(self.engine, self.book, self.secret, self.limits)
        self.runner, self.port = await start_site(app, "127.0.0.1", 0, self.limits)
        self.url = f"http://127.0.0.1:{self.port}"
        # A hang fails the request (and the test) instead of waiting for pytest-timeout.
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S))
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

    async def raw(self, data: bytes, wait: float = WAIT_S) -> bytes:
        """Send bytes as they are on a fresh connection; everything read until the
        server closes it (or ``wait`` passes: then what was read, maybe b"")."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            out = b""
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    out += chunk
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
        return out


def metric_values(text: str) -> dict[tuple, float]:
    """Every sample of a /metrics answer, parsed by prometheus_client's own parser:
    (name, ((label, value), ...) sorted) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def settled_metrics(server: Server, done) -> tuple[str, dict[tuple, float]]:
    """(content type, ``metric_values``) of /metrics once ``done(values)`` holds.

    The engine counts a request just after resolving its future, so an answer can reach
    the client a moment before its counters move: poll briefly instead of racing."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        async with server.http.get(server.url + "/metrics") as r:
            assert r.status == 200
            kind, values = r.headers["Content-Type"], metric_values(await r.text())
        if done(values) or asyncio.get_running_loop().time() > deadline:
            return kind, values
        await asyncio.sleep(0.01)


def http_request(body: bytes, headers: bytes = b"", path: bytes = b"/v1/generate") -> bytes:
    """A POST on one connection that closes after the answer; ``headers`` as raw lines."""
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body)


def status_of(answer: bytes) -> tuple[int, dict | str]:
    """(status, JSON body or text) of a raw HTTP/1.1 answer; (0, "") for none."""
    if not answer:
        return 0, ""
    head, _, body = answer.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1") and body:  # an interim answer (100 Continue)
        head, _, body = body.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")
