"""Keep every chat adapter running on its own: one platform's failure never stops another.

    status = await run_adapters({"telegram": serve_tg, "discord": serve_dc}, stop)

Each ``serve(stop)`` is an adapter's entry point (bot/adapters/__init__.py) bound to
the core and its token. When it raises (Discord closed the gateway with 4011, Telegram
is unreachable, ...) the failure is logged in one line and that adapter alone is
started again after an exponential backoff (``FIRST_RETRY_S`` doubling up to
``MAX_RETRY_S``; back to the first delay once it served ``HEALTHY_S``), while the
others keep serving. Two kinds of ending are not retried: an error retrying cannot fix
(``PERMANENT``: a refused token, a privileged intent switched off in the developer
portal; and any ``ConfigError``, such as another process already polling Telegram for
the bot), which ends that adapter only, and the console returning (its input ended),
which ends the program as it always did.

Exit status of ``run_adapters``: 0 after ``stop`` or the end of the console's input; 2
when every adapter ended on a permanent error (nothing could run: a configuration
problem); 1 when some did while others served.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping

from settings import ConfigError

log = logging.getLogger("bot")
Serve = Callable[[asyncio.Event], Awaitable[None]]
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 300.0
HEALTHY_S = 600.0  # served this long: the next failure starts the backoff afresh
# Errors retrying cannot fix, as (module, class): imported only for adapters in use.
PERMANENT = {"telegram": [("telegram.error", "InvalidToken")],
             "discord": [("discord", "LoginFailure"),
                         ("discord", "PrivilegedIntentsRequired")]}
STOPPED, ENDED, GAVE_UP = "stopped", "ended", "gave up"


def permanent_errors(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(importlib.import_module(module), cls)
                 for module, cls in PERMANENT.get(name, ()))


def retry_delay(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (failures - 1))


def _one_line(exc: BaseException) -> str:
    return (f"{exc.__class__.__name__}: {exc}".splitlines() or ["?"])[0][:300]


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def supervise(name: str, serve: Serve, stop: asyncio.Event) -> str:
    """Run one adapter until ``stop``: STOPPED, ENDED (it returned) or GAVE_UP."""
    loop, failures = asyncio.get_running_loop(), 0
    permanent = permanent_errors(name)
    while not stop.is_set():
        started = loop.time()
        try:
            await serve(stop)
        except ConfigError as exc:  # a setting to change: its message is the whole story
            log.info("%s stopped for good: %s", name, exc)
            print(f"bot: {name}: {exc}".splitlines()[0], file=sys.stderr)
            return GAVE_UP
        except permanent as exc:
            log.error("%s stopped for good: %s", name, _one_line(exc), exc_info=exc)
            print(f"bot: {name}: {_one_line(exc)}", file=sys.stderr)
            return GAVE_UP
        except Exception as exc:  # noqa: BLE001 - any failure: retry this adapter only
            reason = _one_line(exc)
        else:
            if stop.is_set():
                return STOPPED
            if name == "console":  # end of input: the person at the terminal is done
                return ENDED
            reason = "it stopped on its own"
        failures = 1 if loop.time() - started >= HEALTHY_S else failures + 1
        delay = retry_delay(failures)
        log.error("%s failed (%s); starting it again in %.0f s (failure %d in a row)",
                  name, reason, delay, failures)
        await _sleep_unless(stop, delay)
    return STOPPED


async def run_adapters(adapters: Mapping[str, Serve], stop: asyncio.Event) -> int:
    """Supervise every adapter until ``stop`` (or the console's end); the exit status."""
    tasks = {asyncio.create_task(supervise(name, serve, stop), name=name): name
             for name, serve in adapters.items()}
    outcomes: dict[str, str] = {}
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            outcomes[tasks[task]] = task.result()
            if outcomes[tasks[task]] == ENDED:
                stop.set()
    stop.set()  # nothing left serving (every adapter gave up): let the rest wind down
    gave_up = sum(outcome == GAVE_UP for outcome in outcomes.values())
    return 0 if not gave_up else 2 if gave_up == len(outcomes) else 1
