"""Hostile and out-of-range requests against the service on 127.0.0.1: each one is a 4xx
naming the problem (never a 500, never a traceback in the log), and the style still
answers afterwards with its loop alive. Also ``GET /openapi.json``."""
import asyncio
import json
import logging

import pytest
from engine_testing import Server, http_request, status_of

from serving.engine import Engine
from serving.service_request import FIELDS

pytestmark = pytest.mark.timeout(120)
OK = {"style": "tiny", "seed": 1, "max_chars": 5}


@pytest.fixture
def setup(bot):
    arts = {s: bot.save_artifact(s, seed=i) for i, s in enumerate(["tiny", "fable_fox"])}
    book = bot.book()
    return book, {name: style.model_dir for name, style in book.styles.items()}, arts


def no_tracebacks(caplog) -> list[str]:
    """Log lines that carry a traceback or are errors: there must be none."""
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("fields,fragment", [
    ({"top_k": 2**63}, "top_k: top-k must be 0 (off) or between 1 and"),
    ({"top_k": 10_000}, "vocabulary size"),
    ({"top_k": -1}, "top_k"),
    ({"temperature": 1e-300},
     "temperature: temperature must be 0 (greedy) or between 0.05 and 5"),
    ({"temperature": 0.049}, "between 0.05 and 5"),
    ({"temperature": 10**400}, "temperature: out of range"),
    ({"max_chars": 2**70}, "max_chars: max-chars 1180591620717411303424 is above"),
    ({"max_chars": 0}, "max_chars"),
    ({"seed": 2**63}, "seed: seed must be a non-negative integer below 2**63"),
    ({"seed": -1}, "seed"),
    ({"top_p": 10**400}, "top_p: out of range"),
])
def test_every_number_is_bounded_and_the_style_survives(setup, fields, fragment, caplog):
    book, paths, arts = setup
    vocab = len(arts["tiny"].vocab)

    async def go():
        engine = Engine(paths=paths, backend="numpy").start()
        async with Server(engine, book) as s:
            bad = await s.post({"style": "tiny"} | fields)
            edge = await s.post(OK | {"top_k": vocab})  # the vocabulary size itself is fine
            after = await s.post(OK)
            health = engine.worker("tiny").health()
        return bad, edge, after, health

    (code, answer, _), edge, after, health = asyncio.run(go())
    assert code == 400 and fragment in answer["error"], answer
    assert edge[0] == 200 and after[0] == 200
    assert health["alive"] and health["errors"] == 0
    assert not no_tracebacks(caplog)


BODY = json.dumps(OK).encode()
NESTED = b'{"style": ' + b'{"a": ' * 8000 + b"1" + b"}" * 8001


@pytest.mark.parametrize("raw,fragment", [
    (http_request(b"[" * 1000 + b"]" * 1000), "body: "),  # nested too deeply, or a list
    (http_request(b"[" * 30_000 + b"]" * 30_000), "body: JSON nested too deeply"),
    (http_request(NESTED), "body: JSON nested too deeply"),
    (http_request(b'{"style": "tiny", "seed": ' + b"7" * 5000 + b"}"), "too many digits"),
    (http_request(b'{"style": "tiny", "temperature": 1e400}'),
     "temperature: must be a finite"),
    (http_request(b'{"style": "tiny", "top_p": NaN}'), "NaN is not a JSON number"),
    (http_request(b'{"style": "tiny", "top_p": -Infinity}'), "-Infinity is not a JSON number"),
    (http_request(BODY, b"Content-Type: application/json; charset=bogus\r\n"),
     "Content-Type: charset 'bogus' is not accepted"),
    (http_request(BODY, b"Content-Type: application/json; charset=latin-1\r\n"), "charset"),
    (http_request(BODY, b"Content-Encoding: gzip\r\n"), "Content-Encoding: 'gzip'"),
    (http_request(BODY, b"Content-Encoding: br\r\n"), "Content-Encoding: 'br'"),
    (http_request(BODY, b"Content-Encoding: bogus\r\n"), "Content-Encoding: 'bogus'"),
    (http_request(b'{"style": "tiny", "prime": "\xff"}'), "body: not UTF-8"),
    (http_request(b'"tiny"'), "body: expected a JSON object"),
    (http_request(b"null"), "body: expected a JSON object"),
    (http_request(b"5"), "body: expected a JSON object"),
    (http_request(b""), "body: malformed JSON"),
    (http_request(b'{"style": 5}'), "style: wrong type int"),
    (http_request(b'{"style": {"a": 1}}'), "style: wrong type dict"),
    (http_request(b'{"style": "tiny", "max_chars": "5"}'), "max_chars: wrong type str"),
    (http_request(b'{"style": "tiny", "max_chars": 5.0}'), "max_chars: wrong type float"),
    (http_request(b'{"style": "tiny", "temperature": true}'), "temperature: wrong type bool"),
    (http_request(b'{"style": "tiny", "prime": ["a"]}'), "prime: wrong type list"),
    (http_request(b'{"style": "english"}'), "unknown style"),
])
def test_hostile_bodies_and_headers_get_400_naming_the_problem(setup, raw, fragment, caplog):
    book, paths, _ = setup
    caplog.set_level(logging.DEBUG)

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            return status_of(await s.raw(raw)), await s.post(OK)

    (status, answer), after = asyncio.run(go())
    assert status in (400, 404) and fragment in answer["error"], (status, answer)
    assert after[0] == 200
    assert not no_tracebacks(caplog)


@pytest.mark.parametrize("value", [b"\xff\xfe", "s3cr\u00e9t".encode(), "\u4e2d".encode()])
def test_a_non_ascii_secret_header_is_400(setup, value, caplog):
    book, paths, _ = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book, "s3cret") as s:
            bad = status_of(await s.raw(http_request(BODY, b"X-Inference-Secret: " + value
                                                     + b"\r\n")))
            good = status_of(await s.raw(http_request(BODY,
                                                      b"X-Inference-Secret: s3cret\r\n")))
        return bad, good

    (status, answer), (good, _) = asyncio.run(go())
    assert status == 400 and answer["error"] == "X-Inference-Secret: must be ASCII"
    assert good == 200
    assert not no_tracebacks(caplog)


def test_openapi_describes_the_request_and_the_answer(setup):
    book, paths, _ = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            spec = await s.get("/openapi.json")
            answer = await s.post(OK)
        return spec, answer

    (status, text), (_, answer, _) = asyncio.run(go())
    assert status == 200
    spec = json.loads(text)
    assert spec["openapi"].startswith("3.")
    post = spec["paths"]["/v1/generate"]["post"]
    assert {"200", "400", "404", "413", "429", "503"} <= set(post["responses"])
    schemas = spec["components"]["schemas"]
    request, generation = schemas["GenerateRequest"], schemas["GenerateResponse"]
    assert set(request["properties"]) == set(FIELDS) and request["required"] == ["style"]
    assert set(generation["required"]) == set(answer)
    assert set(generation["properties"]["timings"]["required"]) == set(answer["timings"])
    assert {"/v1/styles", "/healthz", "/metrics"} <= set(spec["paths"])
