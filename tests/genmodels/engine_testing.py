"""Helpers for the engine and service tests: a backend whose steps the test releases.

``Gate`` wraps the real NumPy backend; each ``step`` waits for a permit, so a test
decides exactly when the batch advances (no sleeps, no wall-clock assertions), and can
make a chosen step raise.
"""
from __future__ import annotations

import threading

from genmodels import engine as engine_mod
from genmodels.batch import NumpyBackend

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
