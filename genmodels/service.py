"""The inference service: the batching engine behind HTTP (aiohttp), the Procfile's ``inference``.

    python -m genmodels.service [--host 127.0.0.1] [--port 8081] [--config config.toml]

Routes (JSON unless said otherwise):

* ``POST /v1/generate`` ``{"style": "austen", "prime": "...", "temperature": 0.7,
  "top_k": 0, "top_p": 1.0, "seed": 1, "max_chars": 300, "stop": "blank_line"}`` (only
  ``style`` is required; the rest default from config.toml) -> ``{"text", "prime",
  "dropped", "version", "stop_reason", "seed", "timings": {...}}``.
  Unknown style 404 (lists the styles); a bad field 400 naming it; malformed JSON 400;
  body over 64 KiB 413; overload 429 with ``Retry-After``; model missing 503.
  With ``"stream": true`` the answer is NDJSON: ``{"chunk": "..."}`` lines while the
  text is written (they add up to a prefix of it), then the full answer as above.
* ``GET /v1/styles``, ``GET /healthz``, ``GET /metrics`` (Prometheus text format).

Binds to loopback by default. On any other address the shared secret in
``$INFERENCE_SECRET`` is required, and every ``/v1`` call must send it in the
``X-Inference-Secret`` header. A client that disconnects mid-generation frees its slot
(the handler is cancelled, which cancels the request in the engine).
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import sys

from aiohttp import web

from genmodels.cli import OneLineParser, fail
from genmodels.engine import Engine
from genmodels.generation import Busy, GenerationError, ModelUnavailable, inference_settings
from genmodels.metrics import render_metrics
from genmodels.sampler import SamplingParams
from genmodels.styles import ConfigError, StyleBook, load_styles

log = logging.getLogger("genmodels.service")
MAX_BODY = 64 * 1024
MAX_PRIME = 4000  # characters; a prime is read one step per character
SECRET_HEADER = "X-Inference-Secret"
FIELDS = {"style": str, "prime": str, "temperature": (int, float), "top_k": int,
          "top_p": (int, float), "seed": int, "max_chars": int, "stop": str, "stream": bool}
ENGINE, BOOK = web.AppKey("engine", Engine), web.AppKey("book", StyleBook)


def _error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status,
                             headers={"Retry-After": "1"} if status == 429 else None)


class BadField(ValueError):
    """A request field is wrong; the message names it."""


def parse_request(body, book: StyleBook) -> tuple[str, str, SamplingParams]:
    """(style, prime, params) from a request body, or ``BadField``/``KeyError``."""
    if not isinstance(body, dict):
        raise BadField("body: expected a JSON object")
    for key, value in body.items():
        kind = FIELDS.get(key)
        if kind is None:
            raise BadField(f"{key}: unknown field (known: {', '.join(FIELDS)})")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadField(f"{key}: wrong type {type(value).__name__}")
    if "style" not in body:
        raise BadField("style: required")
    style = book.get(body["style"])  # KeyError names the valid styles
    prime = body.get("prime", "")
    if len(prime) > MAX_PRIME:
        raise BadField(f"prime: at most {MAX_PRIME} characters")
    params = SamplingParams(temperature=float(body.get("temperature", style.temperature)),
                            top_k=body.get("top_k", book.top_k),
                            top_p=float(body.get("top_p", book.top_p)),
                            seed=body.get("seed"),
                            max_chars=body.get("max_chars", style.default_chars),
                            stop=body.get("stop", style.stop))
    try:
        params.validate(max_chars_allowed=style.max_chars)
    except ValueError as exc:  # messages name the field ("top-p must be ..."): say which
        field = next((k for k in ("temperature", "top_k", "top_p", "seed", "max_chars", "stop")
                      if k.replace("_", "-") in str(exc) or k in str(exc)), "params")
        raise BadField(f"{field}: {exc}") from None
    return style.name, prime, params


async def generate(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body too large (at most {MAX_BODY} bytes)")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body: malformed JSON")
    book = request.app[BOOK]
    try:
        style, prime, params = parse_request(body, book)
    except KeyError as exc:
        return _error(404, exc.args[0], styles=book.names())
    except BadField as exc:
        return _error(400, str(exc))
    engine, chunks = request.app[ENGINE], asyncio.Queue()
    loop = asyncio.get_running_loop()
    on_chunk = (lambda text: loop.call_soon_threadsafe(chunks.put_nowait, text)) \
        if body.get("stream") else None
    try:
        model = await engine.aloop(style)
        future = asyncio.wrap_future(model.submit(prime, params, on_chunk))
        if on_chunk:
            return await _stream(request, future, chunks, style)
        return web.json_response(_answer(style, await future))
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


def _answer(style: str, done) -> dict:
    g = done.generation
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
    return web.json_response({"ok": True, "loaded": request.app[ENGINE].versions()})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=render_metrics(request.app[ENGINE]),
                        content_type="text/plain", charset="utf-8")


def _secret_middleware(secret: str):
    @web.middleware
    async def check(request: web.Request, handler):
        if request.path.startswith("/v1/"):
            sent = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(sent.encode(), secret.encode()):
                return _error(401, f"missing or wrong {SECRET_HEADER} header")
        return await handler(request)
    return check


def build_app(engine: Engine, book: StyleBook, secret: str | None = None) -> web.Application:
    """The aiohttp app; the caller owns the engine (start it before serving)."""
    app = web.Application(client_max_size=MAX_BODY,
                          middlewares=[_secret_middleware(secret)] if secret else [])
    app[ENGINE], app[BOOK] = engine, book
    app.add_routes([web.post("/v1/generate", generate), web.get("/v1/styles", styles),
                    web.get("/healthz", healthz), web.get("/metrics", metrics)])
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m genmodels.service", description=__doc__.split("\n")[0])
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
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    engine = Engine.from_settings(cfg).start()
    missing = engine.preload(book.names())  # hold every model we have, ready to serve
    for style, why in missing.items():
        log.warning("%s: %s (requests get 503)", style, why)
    try:
        web.run_app(build_app(engine, book, secret), host=args.host, port=args.port,
                    handler_cancellation=True, print=None, access_log=None)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
