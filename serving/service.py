"""The inference service: the batching engine behind HTTP (aiohttp), the Procfile's ``inference``.

    python -m serving [--host 127.0.0.1] [--port 8081] [--config config.toml]

Routes (JSON unless said otherwise; ``GET /openapi.json`` describes them):

* ``POST /v1/generate`` ``{"style": "austen", "prime": "...", "temperature": 0.7,
  "top_k": 0, "top_p": 1.0, "seed": 1, "max_chars": 300, "stop": "blank_line"}`` (only
  ``style`` is required; the rest default from config.toml) -> ``{"text", "prime",
  "dropped", "version", "stop_reason", "seed", "timings": {...}}``.
  Unknown style 404 (lists the styles); a bad field, body or header 400 naming it
  (``serving/service_request.py``); body over 64 KiB 413; body slower than
  ``read_timeout_s`` 408; overload 429 with ``Retry-After``; model missing 503.
  With ``"stream": true`` the answer is NDJSON: ``{"chunk": "..."}`` lines while the
  text is written (they add up to a prefix of it), then the full answer as above.
* ``GET /v1/styles``, ``GET /metrics`` (Prometheus text format: ``serving/metrics.py``),
  ``GET /openapi.json``.
* ``GET /healthz``: 200 when every configured style is loaded and its worker thread runs
  and beat recently, else 503; either way ``{"ok", "not_ready": [...], "styles": {...}}``.

Binds to loopback by default. On any other address the shared secret in
``$INFERENCE_SECRET`` is required, and every ``/v1`` call must send it in the
``X-Inference-Secret`` header. A client that disconnects mid-generation frees its slot
(the handler is cancelled, which cancels the request in the engine). Server timeouts
and the connection limit are ``[inference]`` keys (``serving/service_http.py``);
a log line repeated within a minute is counted, not printed (``serving/logfilters.py``).
Each answer carries ``X-Request-Id``: the caller's when it is 1 to 128 printable ASCII
characters without spaces, else a new id; the request's log records carry it too
(``$LOG_FORMAT=json`` shows it: ``settings/logs.py``).
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from genmodels.cli import OneLineParser, fail
from genmodels.sampler import BadParam
from genmodels.styles import ConfigError, StyleBook, load_styles
from serving.client import SECRET_HEADER, Busy, GenerationError, ModelUnavailable, Result
from serving.config import inference_settings
from serving.engine import Engine, EngineClient
from serving.logfilters import RepeatFilter
from serving.metrics import registry_for
from serving.openapi import SPEC
from serving.service_http import Limits, start_site
from serving.service_request import MAX_BODY, RequestError, parse_request, read_json
from settings.logs import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    clean_request_id,
    new_request_id,
    setup_logging,
)

log = logging.getLogger("serving.service")
LOG_REPEAT_S = 60.0  # the same log line at most once a minute
ENGINE, BOOK = web.AppKey("engine", Engine), web.AppKey("book", StyleBook)
CLIENT = web.AppKey("client", EngineClient)  # how a request reaches the engine
LIMITS = web.AppKey("limits", Limits)
REQUEST_ID_KEY = web.RequestKey("request_id", str)


def _error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status,
                             headers={"Retry-After": "1"} if status == 429 else None)


async def generate(request: web.Request) -> web.StreamResponse:
    book, client = request.app[BOOK], request.app[CLIENT]
    try:
        body = await read_json(request, request.app[LIMITS].read_timeout_s)
        style, prime, params = parse_request(body, book)
        chunks: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        on_chunk = (lambda text: loop.call_soon_threadsafe(chunks.put_nowait, text)) \
            if body.get("stream") else None
        future = await client.submit(style, prime, params, on_chunk)
        if on_chunk:
            return await _stream(request, future, chunks, style)
        return web.json_response(_answer(style, await future))
    except KeyError as exc:
        return _error(404, exc.args[0], styles=book.names())
    except RequestError as exc:
        return _error(exc.status, str(exc))
    except BadParam as exc:  # params the model refuses (top-k above its vocabulary)
        return _error(400, f"{exc.field}: {exc}")
    except Busy as exc:
        return _error(429, str(exc))
    except ModelUnavailable as exc:
        return _error(503, str(exc))
    except GenerationError as exc:
        return _error(500, str(exc))


async def _stream(request: web.Request, future, chunks: asyncio.Queue,
                  style: str) -> web.StreamResponse:
    """NDJSON: ``{"chunk": "..."}`` lines as text is written, then the full answer (or
    ``{"error": ...}``) as the last line. Leaving (a disconnect) cancels the request."""
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        while not future.done() or not chunks.empty():
            getter = asyncio.ensure_future(chunks.get())
            await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await resp.write(json.dumps({"chunk": getter.result()}).encode() + b"\n")
            else:
                getter.cancel()
        try:
            last = _answer(style, future.result())
        except GenerationError as exc:
            last = {"error": str(exc)}
        await resp.write(json.dumps(last).encode() + b"\n")
        await resp.write_eof()
    finally:
        future.cancel()  # no-op once finished; frees the slot if the client left
    return resp


def _answer(style: str, done: Result) -> dict:
    g = done.sample
    # The version that wrote each text, in the log beside the request.
    log.info("generate style=%s version=%s chars=%d stop=%s queued_ms=%.1f total_ms=%.1f",
             style, g.version, len(g.text), g.stop_reason, done.queued_ms,
             done.queued_ms + done.generate_ms)
    return {
        "style": style, "text": g.text, "prime": g.prime, "dropped": g.dropped,
        "version": g.version, "stop_reason": g.stop_reason, "seed": g.seed,
        "timings": {"queued_ms": round(done.queued_ms, 3),
                    "generate_ms": round(done.generate_ms, 3),
                    "total_ms": round(done.queued_ms + done.generate_ms, 3),
                    "steps": done.steps}}


async def styles(request: web.Request) -> web.Response:
    versions = request.app[ENGINE].versions()
    return web.json_response({"styles": [
        {"name": s.name, "command": s.command, "variant": s.variant,
         "description": s.description, "stop": s.stop, "default_chars": s.default_chars,
         "max_chars": s.max_chars, "version": versions.get(s.name)}
        for s in request.app[BOOK].styles.values()]})


async def healthz(request: web.Request) -> web.Response:
    """Readiness: 200 only when every configured style is ready, else 503 naming them."""
    report = request.app[ENGINE].health(request.app[BOOK].names())
    not_ready = [style for style, h in report.items() if not h["ready"]]
    return web.json_response({"ok": not not_ready, "not_ready": not_ready, "styles": report},
                             status=503 if not_ready else 200)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def _secret_middleware(secret: str):
    expected = secret.encode("utf-8", "surrogateescape")  # the environment may hold any bytes

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path.startswith("/v1/"):
            sent = request.headers.get(SECRET_HEADER, "")
            if not sent.isascii():  # undecodable bytes arrive as surrogates
                return _error(400, f"{SECRET_HEADER}: must be ASCII")
            if not hmac.compare_digest(sent.encode("ascii"), expected):
                return _error(401, f"missing or wrong {SECRET_HEADER} header")
        return await handler(request)
    return check


@web.middleware
async def _request_id_middleware(request: web.Request, handler):
    """The caller's ``X-Request-Id`` when it is a clean id (settings/logs.py), else a new
    one: on every log record made while handling the request, and in the answer."""
    request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    try:
        return await handler(request)
    finally:
        REQUEST_ID.reset(token)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if REQUEST_ID_KEY in request:  # streamed answers too: they are prepared in the handler
        response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID_KEY]


def build_app(engine: Engine, book: StyleBook, secret: str | None = None,
              limits: Limits = Limits()) -> web.Application:
    """The aiohttp app, whose requests reach ``engine`` through an ``EngineClient``
    (which starts it; the caller stops it); serve it with ``service_http.start_site``
    (timeouts, connection limit)."""
    middlewares = [_request_id_middleware] + ([_secret_middleware(secret)] if secret else [])
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    app.on_response_prepare.append(_echo_request_id)
    app[ENGINE], app[BOOK], app[LIMITS] = engine, book, limits
    app[CLIENT] = EngineClient(engine)
    app.add_routes([web.post("/v1/generate", generate), web.get("/v1/styles", styles),
                    web.get("/healthz", healthz),
                    # Prometheus text (or OpenMetrics when the scraper asks for it)
                    web.get("/metrics", make_aiohttp_handler(registry_for(engine))),
                    web.get("/openapi.json", openapi)])
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(app: web.Application, host: str, port: int, limits: Limits) -> None:
    """Serve until SIGINT or SIGTERM, then close every connection."""
    runner, bound = await start_site(app, host, port, limits)
    log.info("listening on http://%s:%d", host, bound)  # --port 0: the port chosen
    stop, loop = asyncio.Event(), asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _setup_logging() -> None:
    """Plain text, or JSON lines with ``$LOG_FORMAT=json``; ``ValueError`` for another."""
    setup_logging(logging.INFO, "%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter(LOG_REPEAT_S))


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m serving", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--config", default=None, help="config.toml (default $BOT_CONFIG or ours)")
    args = p.parse_args(argv)
    secret = os.environ.get("INFERENCE_SECRET") or None
    if not is_loopback(args.host) and not secret:
        return fail(f"binding to {args.host} needs INFERENCE_SECRET in the environment")
    try:
        book = load_styles(args.config)
        cfg = inference_settings(book.path)
        _setup_logging()
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    engine = Engine.from_settings(cfg, shipped=book.path.parent / "models").start()
    missing = engine.preload(book.names())  # hold every model we have, ready to serve
    for style, why in missing.items():
        log.warning("%s: %s (requests get 503)", style, why)
    limits = Limits.from_settings(cfg)
    try:
        asyncio.run(serve(build_app(engine, book, secret, limits), args.host, args.port,
                          limits))
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
