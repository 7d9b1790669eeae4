"""Waiting on conditions and processes in tests that run real child processes.

    wait_until(lambda: path.exists(), 30, "the child wrote its pid")
    assert gone(pid)
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               every: float = 0.05) -> T:
    """The first truthy value of ``predicate``; AssertionError naming ``what`` after
    ``timeout`` seconds (a hang guard, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


SCHEDULER_DRIVER = """\
import sys
from pathlib import Path
from storage.leadership import Leadership
from training import scheduler
url, config, root, fake_python = sys.argv[1:5]
sched = scheduler.StyleScheduler(url, Path(config), root=Path(root))
sched.retrainer.python = fake_python  # the training child: a sleeping stand-in
# A short lead lease: a scheduler started after a kill -9 leads within seconds.
scheduler._serve(sched, Leadership(url, "scheduler", lease_s=2.0, every_s=0.2))
"""
"""A scheduler process (``python driver.py URL CONFIG ROOT FAKE_PYTHON``) whose training
children are ``FAKE_PYTHON``."""


def driver_and_fake_python(root: Path, driver: str, fake_python: str) -> tuple[Path, Path]:
    """Write a scheduler/worker driver script and an executable stand-in for the
    training child's Python into ``root``; their paths."""
    (root / "driver.py").write_text(driver)
    fake = root / "fake-python"
    fake.write_text(fake_python)
    fake.chmod(0o755)
    return root / "driver.py", fake
