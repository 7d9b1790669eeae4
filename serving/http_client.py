"""``GenerationClient`` over HTTP: talks to ``python -m serving``.

Chosen by ``bot.wiring.make_client()`` when config.toml sets ``[inference] url``. Same
interface and exceptions as the in-process engine client:

* 429 -> ``Busy``; 404 (unknown style) and 503 (model missing) -> ``ModelUnavailable``;
  anything else that is not 200 -> ``GenerationError`` with the service's one-line reason;
* connection refused / reset / server gone: retried ``retries`` times with a short
  back-off, then ``GenerationError("the inference service is unreachable")``;
* no answer within ``timeout_s``: ``GenerationError`` (not retried: the service may
  still be writing, and a retry would double the load).

    client = HttpClient("http://127.0.0.1:8081", secret=os.environ.get("INFERENCE_SECRET"))
    result = await client.generate("austen", "It is", SamplingParams(seed=1))
"""
from __future__ import annotations

import asyncio
import time

import aiohttp

from genmodels.sampler import Sample, SamplingParams
from serving.client import SECRET_HEADER, Busy, GenerationError, ModelUnavailable, Result
from settings.logs import REQUEST_ID, REQUEST_ID_HEADER

_RETRYABLE = (aiohttp.ClientConnectionError,)  # refused, reset, server disconnected


class HttpClient:
    def __init__(self, url: str, *, timeout_s: float = 60.0, retries: int = 2,
                 backoff_s: float = 0.2, secret: str | None = None,
                 max_connections: int = 256):
        self.url = url.rstrip("/")
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
        """One JSON call with bounded retries on connection errors; the chat request
        being handled (``settings.logs.REQUEST_ID``) is named in ``X-Request-Id``."""
        request_id = REQUEST_ID.get()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        for attempt in range(self.retries + 1):
            try:
                async with self._client().request(method, self.url + path, json=body,
                                                  headers=headers) as resp:
                    data = await _json(resp)
                    return _check(resp.status, data)
            except TimeoutError:  # first: aiohttp's timeouts are connection errors too
                raise GenerationError("the inference service took too long; "
                                      "try again later") from None
            except _RETRYABLE:
                if attempt == self.retries:
                    raise GenerationError("the inference service is unreachable; "
                                          "try again later") from None
                await asyncio.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

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
