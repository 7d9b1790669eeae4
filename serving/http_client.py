"""``GenerationClient`` over HTTP: talks to ``python -m serving``, one service or replicas.

Chosen by ``bot.wiring.make_client()`` when config.toml sets ``[inference] url`` (one
service) or ``urls`` (replicas). Same interface and exceptions as the in-process engine
client:

* 429 -> ``Busy``; 404 (unknown style) and 503 (model missing) -> ``ModelUnavailable``;
  anything else that is not 200 -> ``GenerationError`` with the service's one-line reason;
  none of these is sent again (a second try could write a second text);
* connection refused / reset / server gone before an answer: with one URL retried
  ``retries`` times with a short back-off; with replicas the replica is taken out at
  once and the request is sent once more, to another ready replica; then
  ``GenerationError("the inference service is unreachable")``;
* no answer within ``timeout_s``: ``GenerationError`` (not retried: the service may
  still be writing, and a retry would double the load);
* replicas and none ready: ``GenerationError("the inference service is unavailable")``.

Replicas (``serving/replicas.py``) are balanced by least outstanding requests over those
whose ``/healthz`` passes, checked in the background every second.

    client = HttpClient("http://127.0.0.1:8081", secret=os.environ.get("INFERENCE_SECRET"))
    client = HttpClient(["http://10.0.0.1:8081", "http://10.0.0.2:8081"])
    result = await client.generate("austen", "It is", SamplingParams(seed=1))
"""
from __future__ import annotations

import asyncio
import time

import aiohttp

from genmodels.sampler import Sample, SamplingParams
from serving.client import SECRET_HEADER, Busy, GenerationError, ModelUnavailable, Result
from serving.replicas import CHECK_EVERY_S, Replica, Replicas
from settings.logs import REQUEST_ID, REQUEST_ID_HEADER

_RETRYABLE = (aiohttp.ClientConnectionError,)  # refused, reset, server disconnected
UNREACHABLE = "the inference service is unreachable; try again later"
UNAVAILABLE = "the inference service is unavailable; try again later"
TOO_LONG = "the inference service took too long; try again later"


class HttpClient:
    def __init__(self, url: str | list[str], *, timeout_s: float = 60.0, retries: int = 2,
                 backoff_s: float = 0.2, secret: str | None = None,
                 max_connections: int = 256, check_every_s: float = CHECK_EVERY_S):
        self.replicas = Replicas([url] if isinstance(url, str) else list(url),
                                 every_s=check_every_s)
        self.url = self.replicas.all[0].url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries, self.backoff_s = retries, backoff_s
        self.headers = {SECRET_HEADER: secret} if secret else {}
        self.max_connections = max_connections  # each generation holds one connection
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, headers=self.headers,
                connector=aiohttp.TCPConnector(limit=self.max_connections))
        return self._session

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON call; the chat request being handled (``settings.logs.REQUEST_ID``)
        is named in ``X-Request-Id``."""
        request_id = REQUEST_ID.get()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        if not self.replicas.checked:
            return await self._call_one(method, path, body, headers)
        await self.replicas.ready()
        tried: tuple[Replica, ...] = ()
        while len(tried) < 2:  # the first replica, then once more on another
            replica = self.replicas.pick(exclude=tried)
            if replica is None:
                break
            if tried:
                self.replicas.retried += 1
            try:
                return await self._send(replica, method, path, body, headers)
            except _RETRYABLE as exc:
                self.replicas.mark_down(replica, exc)
                tried += (replica,)
        raise GenerationError(UNREACHABLE if tried else UNAVAILABLE)

    async def _call_one(self, method: str, path: str, body: dict | None,
                        headers: dict | None) -> dict:
        """The single service: bounded retries with back-off on connection errors."""
        replica = self.replicas.all[0]
        for attempt in range(self.retries + 1):
            try:
                return await self._send(replica, method, path, body, headers)
            except _RETRYABLE:
                if attempt == self.retries:
                    raise GenerationError(UNREACHABLE) from None
                await asyncio.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _send(self, replica: Replica, method: str, path: str, body: dict | None,
                    headers: dict | None) -> dict:
        """One try on ``replica``: the answer's body, the exception its status means, or
        a connection error (``_RETRYABLE``) for the caller to retry."""
        with self.replicas.busy(replica):
            try:
                async with self._client().request(method, replica.url + path, json=body,
                                                  headers=headers) as resp:
                    data = await _json(resp)
                    return _check(resp.status, data)
            except TimeoutError:  # first: aiohttp's timeouts are connection errors too
                raise GenerationError(TOO_LONG) from None

    async def generate(self, style: str, prime: str, params: SamplingParams) -> Result:
        params.validate()
        start = time.perf_counter()
        body = {"style": style, "prime": prime, "temperature": params.temperature,
                "top_k": params.top_k, "top_p": params.top_p, "max_chars": params.max_chars,
                "stop": params.stop}
        if params.seed is not None:
            body["seed"] = params.seed
        d = await self._call("POST", "/v1/generate", body)
        try:
            sample = Sample(prime=d["prime"], text=d["text"], stop_reason=d["stop_reason"],
                            seed=d["seed"], dropped=d["dropped"], version=d["version"])
        except (KeyError, TypeError):
            raise GenerationError("the inference service sent an unexpected answer") from None
        return Result(sample, (time.perf_counter() - start) * 1000.0)

    async def versions(self) -> dict[str, str]:
        data = await self._call("GET", "/v1/styles")
        return {s["name"]: s["version"] for s in data.get("styles", []) if s.get("version")}

    async def close(self) -> None:
        await self.replicas.close()
        if self._session is not None:
            await self._session.close()


async def _json(resp: aiohttp.ClientResponse) -> dict:
    try:
        data = await resp.json(content_type=None)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def _check(status: int, data: dict) -> dict:
    """The body of a 200, or the exception the status means."""
    if status == 200:
        return data
    message = str(data.get("error") or f"the inference service answered {status}")
    if status == 429:
        raise Busy(message)
    if status in (404, 503):
        raise ModelUnavailable(message)
    raise GenerationError(message)
