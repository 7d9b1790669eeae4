"""A bare TCP server on 127.0.0.1 for client tests that need a misbehaving service.

Subclasses write ``_serve(reader, writer)`` and may answer with ``reply``.

    async with MyServer() as server:
        client = HttpClient(server.url)
"""
from __future__ import annotations

import asyncio


class LoopbackServer:
    url = ""

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @staticmethod
    async def reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        """One JSON answer, then the connection closed."""
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, len(body), body))
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
