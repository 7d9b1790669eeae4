"""Run the bot: every adapter whose token is set, in one event loop.

    python -m bot              # Telegram if TELEGRAM_TOKEN, Discord if DISCORD_TOKEN; else console
    python -m bot console      # only the terminal chat (piped stdin works: scriptable)
    python -m bot telegram     # only Telegram (TELEGRAM_TOKEN must be set)

Beside the adapters it polls for finished training runs and tells the admins
(bot/notices.py, ``[bot] notify_every_s``), and with ``[bot] metrics_port`` set it serves
Prometheus metrics on ``http://metrics_listen:metrics_port/metrics`` (bot/metrics.py). Run ``python -m storage migrate`` first
(``make run`` does). Each adapter runs on its own: one that fails (a dropped connection,
Discord closing the gateway) is logged and started again with a capped exponential
backoff while the others keep serving (bot/supervise.py). A bad config or a missing
token ends the program with one line on stderr and exit status 2, and so does a platform
refusing the token when no other adapter runs (with others running, only that adapter
stops, and the exit status is 1); Ctrl-C or SIGTERM stops it cleanly.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import os
import signal
import sys

from bot.logsafe import protect_logs
from genmodels.styles import ConfigError
from settings.logs import setup_logging
from storage.errors import StorageError

ADAPTERS = {"telegram": "TELEGRAM_TOKEN", "discord": "DISCORD_TOKEN", "console": None}


def choose(argv: list[str], env: dict[str, str]) -> list[str]:
    """The adapters to start; ``ValueError`` with a one-line reason."""
    if len(argv) > 1:
        raise ValueError("usage: python -m bot [console|telegram|discord]")
    if argv:
        name = argv[0]
        if name not in ADAPTERS:
            raise ValueError(f"unknown adapter {name!r}; choose one of {', '.join(ADAPTERS)}")
        var = ADAPTERS[name]
        if var and not env.get(var):
            raise ValueError(f"{var} is not set in the environment")
        return [name]
    return [n for n, var in ADAPTERS.items() if var and env.get(var)] or ["console"]


async def run(names: list[str]) -> int:
    from bot.core import Core  # after argument checks: loading models' config takes time

    try:
        core = Core.from_config()
    except ValueError as exc:  # e.g. an unknown [inference] key: a config mistake
        raise ConfigError(str(exc)) from None
    try:  # a config an adapter must refuse (its check_config) stops all before any starts
        for name in names:
            module = importlib.import_module(f"bot.adapters.{name}")
            getattr(module, "check_config", lambda settings: None)(core.settings)
        metrics = await _serve_metrics(core)
    except ConfigError:
        await core.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread / Windows
            pass
    adapters = {}
    for name in names:
        module = importlib.import_module(f"bot.adapters.{name}")
        token = os.environ.get(ADAPTERS[name] or "", "")
        # Looked up at each start, so a restarted adapter runs the module's serve.
        adapters[name] = functools.partial(_serve, module, core, token)

    from bot.notices import watch_training  # admin notices of finished training runs
    from bot.supervise import run_adapters

    watcher = asyncio.create_task(watch_training(core, stop), name="training-notices")
    try:
        # Each adapter is retried on its own; see bot/supervise.py.
        return await run_adapters(adapters, stop)
    finally:
        stop.set()
        await watcher
        if metrics is not None:
            await metrics.cleanup()
        await core.close()


async def _serve_metrics(core):
    """The Prometheus endpoint when ``[bot] metrics_port`` is set (its runner), else
    None; a port that cannot be opened is a config mistake (``ConfigError``)."""
    from bot.metrics import serve_metrics

    host, port = core.settings.metrics_listen, core.settings.metrics_port
    try:
        return await serve_metrics(core.metrics.registry, host, port)
    except OSError as exc:
        raise ConfigError(f"bot.metrics_port: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None


async def _serve(module, core, token: str, stop: asyncio.Event) -> None:
    await module.serve(core, token, stop)


def main(argv: list[str] | None = None) -> int:
    try:  # $LOG_FORMAT=json: one JSON object a line (settings/logs.py)
        setup_logging(os.environ.get("LOG_LEVEL", "WARNING"),
                      "%(asctime)s %(levelname)s %(name)s: %(message)s")
    except ValueError as exc:  # an unknown LOG_FORMAT or LOG_LEVEL
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    protect_logs(os.environ)  # bot tokens are in the request URLs libraries log
    try:
        names = choose(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except ValueError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(names))
    except (ConfigError, StorageError) as exc:
        print(f"bot: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an adapter's library is not installed
        print(f"bot: adapter unavailable ({exc})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
