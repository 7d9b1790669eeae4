"""The HTTP client: same results as the engine, error mapping, retries on connection
errors, timeouts, against the real service and against raw servers that stall or die."""
import asyncio
import json

import pytest
from engine_testing import Server, install_gate
from loopback import LoopbackServer

from bot.wiring import make_client
from genmodels.sampler import Sampler, SamplingParams
from serving.client import Busy, GenerationError, ModelUnavailable
from serving.engine import Engine
from serving.http_client import HttpClient

pytestmark = pytest.mark.timeout(120)  # a hang fails fast instead of after 5 minutes


@pytest.fixture
def setup(bot):
    art = bot.save_artifact("tiny", seed=4)
    book = bot.book()
    return book, {name: s.model_dir for name, s in book.styles.items()}, art


def test_client_talks_to_the_service(setup):
    book, paths, art = setup
    p = SamplingParams(seed=3, max_chars=40, stop="end_of_line", temperature=0.9, top_k=5)

    async def go():
        async with Server(Engine(paths=paths, backend="numpy").start(), book, "k") as s:
            client = HttpClient(s.url, secret="k")
            result = await client.generate("tiny", "the", p)
            versions = await client.versions()
            with pytest.raises(ModelUnavailable):
                await client.generate("fable_owl", "", SamplingParams(seed=1, max_chars=5))
            with pytest.raises(ModelUnavailable, match="unknown style"):
                await client.generate("nope", "", SamplingParams(seed=1))
            with pytest.raises(GenerationError, match="max_chars"):
                await client.generate("tiny", "", SamplingParams(seed=1, max_chars=500))
            no_secret = HttpClient(s.url)
            with pytest.raises(GenerationError, match="X-Inference-Secret"):
                await no_secret.generate("tiny", "", SamplingParams(seed=1))
            await no_secret.close()
            await client.close()
        return result, versions

    result, versions = asyncio.run(go())
    assert result.sample == Sampler(art).generate("the", p)
    assert result.latency_ms > 0
    assert versions == {"tiny": art.version}


def test_busy_service_raises_busy(setup, monkeypatch):
    book, paths, _ = setup
    install_gate(monkeypatch)

    async def go():
        engine = Engine(paths=paths, max_batch=1, max_queue=0).start()
        async with Server(engine, book) as s:
            client = HttpClient(s.url)
            hog = asyncio.create_task(client.generate("tiny", "", SamplingParams(seed=1,
                                                                            max_chars=50)))
            while engine.worker("tiny").depth()[0] == 0:
                await asyncio.sleep(0.005)
            with pytest.raises(Busy):
                await client.generate("tiny", "", SamplingParams(seed=2, max_chars=50))
            hog.cancel()
            await client.close()

    asyncio.run(go())


class RawServer(LoopbackServer):
    """A TCP server on 127.0.0.1 that answers each connection with ``behaviour(n)``:
    "close" (die without answering), "stall" (never answer) or a JSON body (200)."""

    def __init__(self, behaviour):
        self.behaviour, self.connections = behaviour, 0

    async def _serve(self, reader, writer):
        self.connections += 1
        action = self.behaviour(self.connections)
        await reader.readuntil(b"\r\n\r\n")
        if action == "close":
            writer.close()
            return
        if action == "stall":
            await asyncio.sleep(3600)
        await self.reply(writer, 200, json.dumps(action).encode())


GOOD = {"prime": "", "text": "hello", "stop_reason": "stop", "seed": 1, "dropped": "",
        "version": "tiny-v9"}


def test_retries_when_the_server_dies_then_succeeds():
    async def go():
        async with RawServer(lambda n: "close" if n < 3 else GOOD) as s:
            client = HttpClient(s.url, retries=2, backoff_s=0.01)
            result = await client.generate("tiny", "", SamplingParams(seed=1))
            await client.close()
            return result, s.connections

    result, connections = asyncio.run(go())
    assert result.sample.text == "hello" and result.sample.version == "tiny-v9"
    assert connections == 3


def test_gives_up_after_bounded_retries():
    async def go():
        async with RawServer(lambda n: "close") as s:
            client = HttpClient(s.url, retries=2, backoff_s=0.01)
            with pytest.raises(GenerationError, match="unreachable"):
                await client.generate("tiny", "", SamplingParams(seed=1))
            await client.close()
            return s.connections

    assert asyncio.run(go()) == 3


def test_nothing_listening_is_unreachable():
    async def go():
        async with RawServer(lambda n: GOOD) as s:
            url = s.url
        client = HttpClient(url, retries=1, backoff_s=0.01)  # the server is gone now
        with pytest.raises(GenerationError, match="unreachable"):
            await client.generate("tiny", "", SamplingParams(seed=1))
        await client.close()

    asyncio.run(go())


def test_a_stalled_server_times_out_without_retrying():
    async def go():
        async with RawServer(lambda n: "stall") as s:
            client = HttpClient(s.url, timeout_s=0.3, retries=3, backoff_s=0.01)
            with pytest.raises(GenerationError, match="took too long"):
                await client.generate("tiny", "", SamplingParams(seed=1))
            await client.close()
            return s.connections

    assert asyncio.run(go()) == 1


def test_make_client_follows_the_inference_table(make_bot, tmp_path):
    bot = make_bot(tmp_path / "b", edit=lambda t: t + '\n[inference]\nurl = "http://127.0.0.1:9"\n'
                   'timeout_s = 5\nretries = 1\n')
    client = make_client(bot.config)
    assert isinstance(client, HttpClient) and client.retries == 1
    bad = make_bot(tmp_path / "c", edit=lambda t: t + "\n[inference]\nretry = 3\n")
    with pytest.raises(ValueError, match="inference.retry: unknown key"):
        make_client(bad.config)
