"""The bot's Prometheus metrics: requests by platform, command and outcome, and how long
replies take, fed by ``Core`` where a request finishes; served on ``GET /metrics`` when
``[bot] metrics_port`` is set (0, the default, opens nothing).

Each ``Core`` has its own ``CollectorRegistry`` (tests build many in one process), with
this process's CPU, memory and file descriptors and its Python version beside them.

    [bot]
    metrics_port = 9108          # then: curl -s 127.0.0.1:9108/metrics
    metrics_listen = "127.0.0.1" # "0.0.0.0" for a Prometheus on another machine
"""
from __future__ import annotations

import logging
from collections.abc import Collection

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.aiohttp import make_aiohttp_handler

from serving.service_http import start_site

log = logging.getLogger(__name__)
# A reply is a help text in milliseconds or a generation in seconds (a long one waits
# for a slot first): buckets from 5 ms to a minute.
REPLY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class BotMetrics:
    """Counters and the reply latency histogram of one ``Core``."""

    def __init__(self, commands: Collection[str]):
        # Only the registry's commands become label values: a user can type any
        # /word, and each distinct label value is a new time series. Held, not copied:
        # a command an adapter adds later (Core.add_command) counts under its name.
        self.commands = commands
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stylebot_bot_requests", "Requests answered, refused ones included.",
            ["platform", "command", "outcome"], registry=self.registry)
        self.reply_seconds = Histogram(
            "stylebot_bot_reply_seconds", "From a message's arrival to its reply.",
            ["command"], buckets=REPLY_BUCKETS_S, registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def command_label(self, command: str) -> str:
        """The label for ``command``: itself if the bot has it, else "unknown" (or
        "none" for plain text)."""
        if not command:
            return "none"
        return command if command in self.commands else "unknown"

    def finished(self, platform: str, command: str, outcome: str, seconds: float) -> None:
        """One request answered (``outcome``: storage.models.Outcome's value)."""
        label = self.command_label(command)
        self.requests.labels(platform, label, outcome).inc()
        self.reply_seconds.labels(label).observe(max(seconds, 0.0))


async def serve_metrics(registry: CollectorRegistry, host: str,
                        port: int) -> web.AppRunner | None:
    """Serve ``registry`` on http://host:port/metrics; None (nothing opened) for port 0.
    The caller stops it with ``await runner.cleanup()``; ``OSError`` if the port is
    taken."""
    if not port:
        return None
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner, _ = await start_site(app, host, port)  # the service's timeouts and limits
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
