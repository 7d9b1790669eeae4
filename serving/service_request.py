"""Reading a ``POST /v1/generate`` request: the body (size, time, encoding, charset,
JSON) and its fields, for ``serving/service.py``.

Whatever a client sends, the outcome is a request or a ``RequestError`` carrying the
HTTP status (400, 408, 413) and one line naming the problem; hostile input (JSON nested
1,000 deep, a 5,000-digit number, 1e400, ``charset=bogus``, a gzip header) never raises
anything else.

    python -m pytest tests/serving/test_service_hostile.py -q
"""
from __future__ import annotations

import asyncio
import json
import math

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from genmodels.sampler import BadParam, SamplingParams
from genmodels.styles import StyleBook

MAX_BODY = 64 * 1024
MAX_PRIME = 4000  # characters; a prime is read one step per character
FIELDS: dict[str, type | tuple[type, ...]] = {
    "style": str, "prime": str, "temperature": (int, float), "top_k": int,
    "top_p": (int, float), "seed": int, "max_chars": int, "stop": str, "stream": bool}
CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")  # JSON is UTF-8 (RFC 8259)


class RequestError(ValueError):
    """The client sent something we cannot use; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BadField(RequestError):
    """A request field is wrong; the message names it."""

    def __init__(self, message: str):
        super().__init__(400, message)


def _show(value: str, limit: int = 40) -> str:
    """A client's text for an error message: printable, short."""
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def check_headers(headers) -> None:
    """Only an uncompressed body in UTF-8 is read (aiohttp does not decompress here)."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(400, f"Content-Encoding: {_show(encoding)} is not accepted; "
                                f"send the body uncompressed")
    for param in headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in CHARSETS:
                raise RequestError(400, f"Content-Type: charset {_show(charset)} is not "
                                        f"accepted; send UTF-8")


async def read_json(request: web.Request, timeout_s: float):
    """The request's JSON body; ``RequestError`` for anything unreadable."""
    check_headers(request.headers)
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, f"body too large (at most {MAX_BODY} bytes)") from None
    except TimeoutError:
        raise RequestError(408, f"body: not received within {timeout_s:g} s") from None
    except (HttpProcessingError, RequestPayloadError) as exc:
        raise RequestError(400, f"body: unreadable ({' '.join(str(exc).split())[:100]})") \
            from None
    return parse_json(raw)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes):
    """JSON from UTF-8 bytes; ``RequestError`` (400) naming what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"body: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise RequestError(400, "body: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"body: malformed JSON ({exc.msg}, line {exc.lineno} "
                                f"column {exc.colno})") from None
    except ValueError as exc:  # over 4,300 digits (int conversion limit), NaN, Infinity
        why = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise RequestError(400, f"body: malformed JSON ({why})") from None


def _number(body: dict, key: str, default) -> float:
    try:
        value = float(body.get(key, default))
    except OverflowError:  # an integer too big for a float
        raise BadField(f"{key}: out of range") from None
    if not math.isfinite(value):  # 1e400 parses as inf
        raise BadField(f"{key}: must be a finite number")
    return value


def _check_types(body) -> None:
    if not isinstance(body, dict):
        raise BadField("body: expected a JSON object")
    for key, value in body.items():
        kind = FIELDS.get(key)
        if kind is None:
            raise BadField(f"{key[:40]}: unknown field (known: {', '.join(FIELDS)})")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadField(f"{key}: wrong type {type(value).__name__}")
    if "style" not in body:
        raise BadField("style: required")


def parse_request(body, book: StyleBook) -> tuple[str, str, SamplingParams]:
    """(style, prime, params) from a request body, or ``BadField``/``KeyError``."""
    _check_types(body)
    style = book.styles.get(body["style"])
    if style is None:  # bases (book.get finds them) are never served
        raise KeyError(f"unknown style {_show(body['style'])}; choose one of "
                       f"{', '.join(book.styles)}")
    prime = body.get("prime", "")
    if len(prime) > MAX_PRIME:
        raise BadField(f"prime: at most {MAX_PRIME} characters")
    params = SamplingParams(temperature=_number(body, "temperature", style.temperature),
                            top_k=body.get("top_k", book.top_k),
                            top_p=_number(body, "top_p", book.top_p),
                            seed=body.get("seed"),
                            max_chars=body.get("max_chars", style.default_chars),
                            stop=body.get("stop", style.stop))
    check_params(params, max_chars=style.max_chars)
    return style.name, prime, params


def check_params(params: SamplingParams, max_chars: int | None = None) -> None:
    """``params.validate``, its ``BadParam`` turned into ``BadField`` naming the field
    (the model's own bounds, such as its vocabulary size, are checked as it is submitted)."""
    try:
        params.validate(max_chars_allowed=max_chars)
    except BadParam as exc:
        raise BadField(f"{exc.field}: {exc}") from None
