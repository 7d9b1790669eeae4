"""The HTTP service on a real aiohttp server on 127.0.0.1: contract, status codes,
bad input, overload, disconnects, metrics and the shared secret."""
import asyncio
import json

import pytest
from engine_testing import Server, install_gate, settled_metrics

from genmodels.sampler import Sampler, SamplingParams
from serving.engine import Engine

pytestmark = pytest.mark.timeout(120)  # a hang fails fast instead of after 5 minutes


@pytest.fixture
def setup(bot):
    """The tiny bot config with models for tiny and fable_fox (fable_owl has none)."""
    arts = {s: bot.save_artifact(s, seed=i) for i, s in enumerate(["tiny", "fable_fox"])}
    book = bot.book()
    paths = {name: style.model_dir for name, style in book.styles.items()}
    return book, paths, arts


def run(coro):
    return asyncio.run(coro)


def test_generate_contract_matches_the_sampler(setup):
    book, paths, arts = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            ok = await s.post({"style": "tiny", "prime": "the ", "seed": 7, "max_chars": 30})
            default = await s.post({"style": "fable_fox"})
            styles = json.loads((await s.get("/v1/styles"))[1])
            health = await s.get("/healthz")
            tiny_ok = ("stylebot_inference_requests_total", (("outcome", "ok"), ("style", "tiny")))
            metrics = (await settled_metrics(s, lambda v: v.get(tiny_ok) == 1))[1]
        return ok, default, styles, health, metrics

    (status, body, _), default, styles, health, metrics = run(go())
    assert status == 200
    want = Sampler(arts["tiny"]).generate("the ", SamplingParams(
        temperature=0.7, seed=7, max_chars=30, stop="end_of_line"))  # the style's defaults
    assert (body["text"], body["version"], body["stop_reason"], body["seed"]) == (
        want.text, want.version, want.stop_reason, 7)
    assert set(body["timings"]) == {"queued_ms", "generate_ms", "total_ms", "steps"}
    assert default[0] == 200 and len(default[1]["text"]) <= 30  # fable_fox default_chars
    names = {s["name"]: s for s in styles["styles"]}
    assert set(names) == set(book.names()) and names["tiny"]["version"] == want.version
    # fable_owl and empty have no model: the service is not ready for them.
    assert health[0] == 503 and json.loads(health[1])["not_ready"] == ["fable_owl", "empty"]
    tiny = (("style", "tiny"),)
    assert metrics["stylebot_inference_requests_total", (("outcome", "ok"),) + tiny] == 1
    for name in ("queue_depth", "batch_size", "loop_ready", "chars_total", "steps_total",
                 "latency_seconds_count"):
        assert ("stylebot_inference_" + name, tiny) in metrics, name
    assert ("stylebot_inference_blas_threads", ()) in metrics


@pytest.mark.parametrize("stop", ["none", "end_of_line", "blank_line"])
def test_streaming_sends_chunks_then_the_full_answer(setup, stop):
    book, paths, arts = setup
    body = {"style": "tiny", "prime": "the ", "seed": 11, "max_chars": 100, "stop": stop}

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            async with s.http.post(s.url + "/v1/generate", json=body | {"stream": True}) as r:
                lines = [json.loads(line) async for line in r.content]
                kind = r.headers["Content-Type"]
            plain = await s.post(body)
        return lines, kind, plain

    lines, kind, (status, plain, _) = run(go())
    assert kind.startswith("application/x-ndjson") and status == 200
    *chunks, last = lines
    assert all(set(c) == {"chunk"} for c in chunks)
    assert len(chunks) >= 2 or stop != "none"
    assert last["text"] == plain["text"] and last["version"] == plain["version"]
    assert last["text"].startswith("".join(c["chunk"] for c in chunks))


@pytest.mark.parametrize("body,status,fragment", [
    ({"style": "tiny", "stream": "yes"}, 400, "stream"),
    ({"style": "nope"}, 404, "unknown style 'nope'"),
    ({"prime": "x"}, 400, "style: required"),
    ({"style": "tiny", "temperature": 9}, 400, "temperature"),
    ({"style": "tiny", "top_k": "many"}, 400, "top_k"),
    ({"style": "tiny", "top_p": 0}, 400, "top_p"),
    ({"style": "tiny", "max_chars": 101}, 400, "max_chars"),
    ({"style": "tiny", "stop": "never"}, 400, "stop"),
    ({"style": "tiny", "seed": True}, 400, "seed"),
    ({"style": "tiny", "colour": "red"}, 400, "colour: unknown field"),
    (["tiny"], 400, "body: expected a JSON object"),
    ({"style": "fable_owl"}, 503, "unavailable"),
])
def test_bad_requests_get_a_clear_answer_and_the_service_stays_up(setup, body, status,
                                                                   fragment):
    book, paths, _ = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            bad = await s.post(body)
            after = await s.post({"style": "tiny", "seed": 1, "max_chars": 5})
        return bad, after

    (code, answer, _), after = run(go())
    assert code == status and fragment in answer["error"], answer
    if status == 404:
        assert "tiny" in answer["styles"]
    assert after[0] == 200


def test_malformed_json_and_oversized_bodies(setup):
    book, paths, _ = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book) as s:
            return (await s.post(None, raw=b"{not json"),
                    await s.post(None, raw=json.dumps({"style": "tiny",
                                                       "prime": "a" * 70_000}).encode()),
                    await s.post({"style": "tiny", "prime": "a" * 5000}))

    malformed, large, long_prime = run(go())
    assert malformed[0] == 400 and "malformed JSON" in malformed[1]["error"]
    assert large[0] == 413 and "too large" in large[1]["error"]
    assert long_prime[0] == 400 and "prime" in long_prime[1]["error"]


def test_overload_is_429_with_retry_after(setup, monkeypatch):
    book, paths, _ = setup
    install_gate(monkeypatch)  # the first request holds the only slot

    async def go():
        engine = Engine(paths=paths, max_batch=1, max_queue=0).start()
        async with Server(engine, book) as s:
            first = asyncio.create_task(s.post({"style": "tiny", "seed": 1}))
            while engine.worker("tiny").depth()[0] == 0:
                await asyncio.sleep(0.005)
            second = await s.post({"style": "tiny", "seed": 2})
            first.cancel()
            return second

    status, body, headers = run(go())
    assert status == 429 and "busy" in body["error"]
    assert headers["Retry-After"] == "1"


def test_client_disconnect_frees_the_slot(setup, monkeypatch):
    book, paths, _ = setup
    gate = install_gate(monkeypatch)

    async def go():
        engine = Engine(paths=paths, max_batch=1, max_queue=0).start()
        loop = engine.worker("tiny")
        async with Server(engine, book) as s:
            gone = asyncio.create_task(s.post({"style": "tiny", "seed": 1, "max_chars": 100,
                                               "stop": "none"}))
            while loop.depth()[0] == 0:
                await asyncio.sleep(0.005)
            gone.cancel()  # the client hangs up mid-generation
            while loop.depth()[0] or loop.stats.requests["cancelled"] == 0:
                gate.release(1)
                await asyncio.sleep(0.01)
            gate.open = True
            gate.release(1)
            after = await s.post({"style": "tiny", "seed": 2, "max_chars": 10})
        return after, loop.stats.requests

    after, counts = run(go())
    assert after[0] == 200
    assert counts["cancelled"] == 1


def test_shared_secret_is_required_when_set(setup):
    book, paths, _ = setup

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book, "s3cret") as s:
            return (await s.post({"style": "tiny"}),
                    await s.post({"style": "tiny", "max_chars": 5},
                                 headers={"X-Inference-Secret": "wrong"}),
                    await s.post({"style": "tiny", "max_chars": 5},
                                 headers={"X-Inference-Secret": "s3cret"}),
                    await s.get("/healthz"))

    missing, wrong, right, health = run(go())
    assert missing[0] == 401 and wrong[0] == 401 and "X-Inference-Secret" in wrong[1]["error"]
    assert right[0] == 200 and health[0] == 503  # no secret needed; not every style has a model


def test_cli_refuses_a_public_address_without_a_secret(run_cli, bad_input, bot):
    proc = run_cli("serving", ["--host", "0.0.0.0", "--port", "1"],
                   config=bot.config, INFERENCE_SECRET="")
    bad_input(proc, "INFERENCE_SECRET")
    bad_input(run_cli("serving", ["--port", "x"], config=bot.config), "--port")


def test_the_old_command_name_says_where_the_service_moved_and_runs_it(run_cli, bot):
    """``python -m genmodels.service``: one line naming ``python -m serving``, then the
    service itself with the same arguments and exit status."""
    proc = run_cli("genmodels.service", ["--port", "x"], config=bot.config)
    moved, *rest = proc.stderr.strip().splitlines()
    assert "python -m serving" in moved and proc.returncode == 2, proc.stderr
    assert len(rest) == 1 and "--port" in rest[0] and "Traceback" not in proc.stderr
