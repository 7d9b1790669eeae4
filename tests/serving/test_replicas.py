"""Inference replicas: the HTTP client spreads requests over the ready replicas (least
outstanding), survives one killed mid-traffic by sending its requests once more to the
other, takes it back when it returns, never sends to a replica whose /healthz is 503,
never repeats a request that got an answer, and config.toml's ``urls`` / ``url``."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from engine_testing import Server, metric_values
from loopback import LoopbackServer

from bot.wiring import make_client
from genmodels.sampler import SamplingParams
from serving.client import GenerationError
from serving.engine import Engine
from serving.http_client import HttpClient

pytestmark = pytest.mark.timeout(240)  # two service processes on a busy 2-core machine
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # a hang guard only: reached when something is broken


async def until(predicate, what: str) -> None:
    """Poll ``predicate`` until true; fails (naming ``what``) only after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceOnPort:
    """``python -m serving`` on a fixed loopback port, so a restart comes back at the
    same URL (tests/serving/service_process.py picks a fresh port each time)."""

    def __init__(self, config: Path, folder: Path, port: int):
        self.config, self.folder, self.port = config, folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.folder / f"service-{self.port}-{self.starts}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT),
                   MODEL_REGISTRY=str(self.folder / "empty-registry"))
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving", "--port", str(self.port),
                 "--config", str(self.config)], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while "listening on" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the service did not start:\n{log.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def served(url: str) -> int:
    """Generations a service has finished, from its own /metrics."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        values = metric_values(await resp.text())
    return int(sum(v for (name, _), v in values.items()
                   if name == "stylebot_inference_requests_total"))


async def settled(one: str, two: str, total: int) -> tuple[int, int]:
    """Both services' counts once they add up to ``total``: a service counts a request
    just after answering it, so the last answer may arrive before its count moves."""
    deadline = time.monotonic() + WAIT_S
    while sum(counts := (await served(one), await served(two))) < total:
        assert time.monotonic() < deadline, counts
        await asyncio.sleep(0.01)
    return counts


def params(seed: int) -> SamplingParams:
    return SamplingParams(seed=seed, max_chars=100, stop="none")


async def traffic(client: HttpClient, users: int, stop: asyncio.Event,
                  answered: list, failed: list) -> None:
    """``users`` callers, each sending one request after another until ``stop``."""
    async def user(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answered.append(await client.generate("tiny", "the", params(k * 10_000 + n)))
            except GenerationError as exc:
                failed.append(exc)
    await asyncio.gather(*(user(k) for k in range(users)))


def test_two_replicas_share_load_and_survive_one_killed_mid_traffic(every_style, tmp_path):
    a = ServiceOnPort(every_style[0].path, tmp_path, free_port())
    b = ServiceOnPort(every_style[0].path, tmp_path, free_port())

    async def go():
        client = HttpClient([a.url, b.url])
        first, second = client.replicas.all
        for seed in range(10):  # one at a time: ties still take turns
            await client.generate("tiny", "the", params(seed))
        shared = [await served(a.url), await served(b.url)]
        stop, answered, failed = asyncio.Event(), [], []
        users = asyncio.create_task(traffic(client, 6, stop, answered, failed))
        await until(lambda: second.outstanding > 0, "a request in flight on b")
        b.kill()  # kill -9 with requests in flight and more coming
        await until(lambda: not second.ready, "b marked down")
        down_at = len(answered)
        await until(lambda: len(answered) >= down_at + 20, "traffic going on without b")
        picked_while_down = second.picked
        await asyncio.to_thread(b.start)  # back, at the same URL
        await until(lambda: second.ready, "b ready again")
        await until(lambda: second.picked > picked_while_down + 3, "traffic on b again")
        stop.set()
        await users
        back = await served(b.url)
        await client.close()
        return shared, answered, failed, client.replicas.retried, first.ready, back

    a.start()
    try:
        b.start()
        shared, answered, failed, retried, first_ready, back = asyncio.run(go())
    finally:
        a.stop()
        b.stop()
    assert all(n > 0 for n in shared), shared  # both replicas received requests
    assert failed == []  # every request answered, the ones b never answered included
    assert retried >= 1  # ... because they were sent again to a
    assert first_ready and back > 0  # the restarted b serves again


def test_a_replica_whose_healthz_says_503_gets_no_traffic(every_style):
    book, paths = every_style

    async def go():
        healthy = Engine(paths=paths, backend="numpy").start()
        sick = Engine(paths=paths, backend="numpy").start()
        await asyncio.to_thread(healthy.preload, book.names())
        await asyncio.to_thread(sick.preload, book.names())
        async with Server(healthy, book) as good, Server(sick, book) as bad:
            sick.worker("fable_fox").stop()  # /healthz: 503, yet tiny could still be served
            client = HttpClient([bad.url, good.url])
            results = await asyncio.gather(
                *(client.generate("tiny", "the", params(seed)) for seed in range(12)))
            counts = await settled(good.url, bad.url, 12)
            healthy.worker("fable_fox").stop()  # now neither replica is ready
            await until(lambda: not client.replicas.all[1].ready, "good marked not ready")
            with pytest.raises(GenerationError, match="unavailable"):
                await client.generate("tiny", "the", params(99))
            await client.close()
        return results, counts

    results, (good_count, bad_count) = asyncio.run(go())
    assert len(results) == 12 and all(r.sample.text for r in results)
    assert (good_count, bad_count) == (12, 0)


class FakeReplica(LoopbackServer):
    """A loopback server whose /healthz is 200 and whose /v1/generate does
    ``behaviour``: "close" (drop the connection unanswered) or an HTTP status."""

    def __init__(self, behaviour: str | int):
        self.behaviour, self.generates = behaviour, 0

    async def _serve(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(next((line.split(":")[1] for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), "0"))
        await reader.readexactly(length)
        if head.startswith("GET /healthz"):
            status = 200
        else:
            self.generates += 1
            if self.behaviour == "close":
                writer.close()
                return
            status = int(self.behaviour)
        await self.reply(writer, status, b'{"error": "injected"}')


@pytest.mark.parametrize("status", [400, 500, 503])
def test_an_answered_request_is_never_sent_again(status):
    async def go():
        async with FakeReplica(status) as one, FakeReplica(status) as two:
            client = HttpClient([one.url, two.url], check_every_s=60)
            with pytest.raises(GenerationError, match="injected"):
                await client.generate("tiny", "", params(1))
            ready = [r.ready for r in client.replicas.all]
            await client.close()
            return one.generates + two.generates, ready

    assert asyncio.run(go()) == (1, [True, True])


def test_a_dropped_connection_is_retried_once_on_another_replica():
    async def go():
        async with FakeReplica("close") as one, FakeReplica("close") as two:
            client = HttpClient([one.url, two.url], retries=5, check_every_s=60)
            with pytest.raises(GenerationError, match="unreachable"):
                await client.generate("tiny", "", params(1))
            ready = [r.ready for r in client.replicas.all]
            await client.close()
            return (one.generates, two.generates), ready

    assert asyncio.run(go()) == ((1, 1), [False, False])


def _client_for(make_bot, folder: Path, inference: str):
    bot = make_bot(folder, edit=lambda t: t + "\n[inference]\n" + inference)
    return make_client(bot.config)


def test_config_urls_and_url(make_bot, tmp_path):
    two = _client_for(make_bot, tmp_path / "a",
                      'urls = ["http://10.0.0.1:8081/", "https://infer.example:443"]\n')
    assert isinstance(two, HttpClient)
    assert [r.url for r in two.replicas.all] == ["http://10.0.0.1:8081",
                                                 "https://infer.example:443"]
    assert two.replicas.checked
    one = _client_for(make_bot, tmp_path / "b", 'url = "http://127.0.0.1:9"\n')
    assert isinstance(one, HttpClient) and [r.url for r in one.replicas.all] == [
        "http://127.0.0.1:9"]
    assert not one.replicas.checked  # one service: used as before, never checked


@pytest.mark.parametrize("inference, message", [
    ('url = "http://a:1"\nurls = ["http://b:1"]\n',
     "inference: set url (one service) or urls (replicas), not both"),
    ('urls = ["http://a:1", "127.0.0.1:8081"]\n',
     "inference.urls[1]: must be an http:// or https:// URL with a host, got '127.0.0.1:8081'"),
    ('url = "ftp://a"\n', "inference.url: must be an http:// or https:// URL"),
    ('urls = ["http://a:port"]\n', "inference.urls[0]: must be an http://"),
    ('urls = ["http://a:1", "http://a:1/"]\n', "inference.urls: a replica is listed twice"),
    ('urls = "http://a:1"\n', "inference.urls: must be a list of strings"),
])
def test_config_refuses_both_or_a_bad_url_in_one_line(make_bot, tmp_path, inference, message):
    with pytest.raises(ValueError) as refused:
        _client_for(make_bot, tmp_path / "c", inference)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
