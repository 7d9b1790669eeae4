"""The service's /metrics through prometheus_client: parseable, the right content type,
counters that only grow however many scrapers read them, one registry per service.

    python -m pytest tests/serving/test_service_metrics.py -q
"""
import asyncio

import pytest
from engine_testing import Server, metric_values, settled_metrics
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from serving.engine import Engine

pytestmark = pytest.mark.timeout(120)
TINY = (("style", "tiny"),)
OK = ("stylebot_inference_requests_total", (("outcome", "ok"), ("style", "tiny")))
COUNTERS = ("chars_total", "steps_total", "batch_rows_total", "latency_seconds_count")


@pytest.fixture
def book(bot):
    bot.save_artifact("tiny")
    return bot.book()


def _engine(bot) -> Engine:
    engine = Engine(paths={"tiny": bot.models / "tiny"}, backend="numpy")
    assert engine.preload(["tiny"]) == {}  # so an idle service lists tiny too
    return engine.start()


async def _scrape(s: Server, accept: str = "*/*") -> tuple[str, dict]:
    async with s.http.get(s.url + "/metrics", headers={"Accept": accept}) as r:
        assert r.status == 200
        return r.headers["Content-Type"], metric_values(await r.text())


def _ok(n: int):
    """Settled once ``n`` requests are counted ok (and with them their characters)."""
    return lambda values: values.get(OK) == n


def test_counters_grow_and_a_scrape_resets_nothing(book, bot):
    async def go():
        async with Server(_engine(bot), book) as s:
            await s.post({"style": "tiny", "seed": 1, "max_chars": 20})
            first = (await settled_metrics(s, _ok(1)))[1]
            again = (await _scrape(s))[1]  # a second scraper, nothing generated between
            await s.post({"style": "tiny", "seed": 2, "max_chars": 20})
            kind, later = await settled_metrics(s, _ok(2))
        return first, again, kind, later

    first, again, kind, later = asyncio.run(go())
    assert kind == CONTENT_TYPE_PLAIN_0_0_4  # what a plain GET gets
    for name in COUNTERS:
        key = ("stylebot_inference_" + name, TINY)
        assert first[key] > 0, name
        assert again[key] == first[key], name  # scraping changes nothing
        assert later[key] > first[key], name
    assert (first[OK], again[OK], later[OK]) == (1, 1, 2)
    assert not any(name.endswith("per_second") for name, _ in later)  # rates: Prometheus'
    # the histogram's buckets are cumulative and end in +Inf, the count
    inf = ("stylebot_inference_latency_seconds_bucket", (("le", "+Inf"),) + TINY)
    assert later[inf] == later["stylebot_inference_latency_seconds_count", TINY] == 2


def test_each_service_has_its_own_registry_with_process_metrics(book, bot):
    async def go():
        async with Server(_engine(bot), book) as one, Server(_engine(bot), book) as two:
            await one.post({"style": "tiny", "seed": 1, "max_chars": 5})
            open_kind = (await _scrape(one, "application/openmetrics-text"))[0]
            return (await settled_metrics(one, _ok(1)))[1], (await _scrape(two))[1], open_kind

    one, two, open_kind = asyncio.run(go())
    assert open_kind.startswith(OPENMETRICS.split(";")[0])  # negotiated, as Prometheus does
    assert one[OK] == 1 and two[OK] == 0
    for values in (one, two):
        assert ("process_cpu_seconds_total", ()) in values
        assert any(name == "python_info" for name, _ in values)
