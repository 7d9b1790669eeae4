"""The inference service's HTTP server: aiohttp's ``AppRunner`` with timeouts and a
connection limit, for ``serving/service.py``.

* ``keepalive_s``: aiohttp's ``keepalive_timeout``. It closes a connection idle between
  requests, and also one that has not finished sending its request line and headers
  that long after connecting (aiohttp arms the same timer when a connection opens), so
  a client that trickles headers (slowloris) holds a socket for at most that long.
* ``read_timeout_s``: the body must arrive within this (``service_request.read_json``
  answers 408); aiohttp then lingers at most ``LINGER_S`` for the rest of it.
* ``max_connections``: a connection past this many open ones gets a 429 with
  ``Retry-After`` (overload, like a full queue: the bot's client says "busy") and is
  closed at once, before the process runs out of file descriptors.

Request bodies are not decompressed (``auto_decompress=False``: a compressed body is a
400, not a zip bomb), and aiohttp's logs go through ``ClientErrorFilter`` (a client's
malformed request is one warning line, not a traceback).

    runner, port = await start_site(app, "127.0.0.1", 0, Limits(max_connections=64))
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiohttp import web

from serving.logfilters import ClientErrorFilter

HTTP_LOG = logging.getLogger("serving.service.http")
HTTP_LOG.addFilter(ClientErrorFilter())
LINGER_S = 2.0  # after an early answer (408, 413), read and drop the body this long


@dataclass(frozen=True)
class Limits:
    """Server limits; config.toml's ``[inference]`` keys of the same names."""

    keepalive_s: float = 30.0  # longer than aiohttp clients' 15 s: they close first
    read_timeout_s: float = 10.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, cfg: dict) -> Limits:
        return cls(keepalive_s=float(cfg["keepalive_s"]),
                   read_timeout_s=float(cfg["read_timeout_s"]),
                   max_connections=int(cfg["max_connections"]))


def _refusal() -> bytes:
    body = json.dumps({"error": "too many connections; try again in a moment"}).encode()
    return (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class LimitedRunner(web.AppRunner):
    """``AppRunner`` whose server takes at most ``limits.max_connections`` at once."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs):
        super().__init__(app, keepalive_timeout=limits.keepalive_s, lingering_time=LINGER_S,
                         auto_decompress=False, logger=HTTP_LOG, access_log=None,
                         handler_cancellation=True, **kwargs)
        self.limits = limits
        self.refused = 0

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        admit = server.connection_made

        def connection_made(handler, transport) -> None:
            if len(server.connections) >= self.limits.max_connections:
                self.refused += 1
                HTTP_LOG.warning("refusing connections: %d open, the limit "
                                 "([inference] max_connections)", self.limits.max_connections)
                transport.write(_refusal())
                transport.close()  # never registered: connection_lost has nothing to drop
                return
            admit(handler, transport)

        # aiohttp's hook for each new connection, replaced on this one server
        server.connection_made = connection_made  # type: ignore[method-assign]
        return server


async def start_site(app: web.Application, host: str, port: int,
                     limits: Limits = Limits()) -> tuple[LimitedRunner, int]:
    """Serve ``app`` on host:port (0: any free port); (runner, the bound port). The
    caller stops it with ``await runner.cleanup()``."""
    runner = LimitedRunner(app, limits)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
