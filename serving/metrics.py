"""Prometheus metrics of the inference service (``GET /metrics``), with prometheus_client.

``registry_for(engine)`` builds one ``CollectorRegistry`` per service instance (tests run
several in one process): the engine's counters read at scrape time by ``EngineCollector``,
and the process's CPU, memory and file descriptors (``ProcessCollector``) and Python
version (``PlatformCollector``). Nothing here resets on a scrape: counters only grow
(while the process lives), so any number of scrapers see the same values and Prometheus
computes the rates, e.g. characters per second ``rate(stylebot_inference_chars_total[1m])``
and the mean batch ``rate(..._batch_rows_total[1m]) / rate(..._steps_total[1m])``.

    curl -s 127.0.0.1:8081/metrics
"""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from serving.engine import Engine, StyleWorker
from serving.engine_stats import LATENCY_BUCKETS_MS

P = "stylebot_inference_"

# name (without _total) -> (help, the loop's count); each a counter labelled by style
COUNTERS = {
    "chars": ("Characters sampled.", lambda loop: loop.stats.chars),
    "steps": ("Batched LSTM steps.", lambda loop: loop.stats.steps),
    "batch_rows": ("Rows stepped, summed over steps (mean batch: its rate over steps').",
                   lambda loop: loop.stats.batch_rows),
    "reloads": ("Hot reloads of a new model version.", lambda loop: loop.stats.reloads),
    "loop_errors": ("Failed steps and loop errors survived.", lambda loop: loop.stats.errors),
}
GAUGES = {
    "queue_depth": ("Requests waiting for a slot.", lambda loop: loop.depth()[1]),
    "batch_size": ("Requests stepping now.", lambda loop: loop.depth()[0]),
    "loop_ready": ("1 if the loop runs and beat recently (/healthz).",
                   lambda loop: int(loop.health()["ready"])),
}


class EngineCollector(Collector):
    """The engine's per-style counts as metric families, read when scraped."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        loops = self.engine.loaded()
        requests = CounterMetricFamily(P + "requests", "Finished requests by outcome.",
                                       labels=["style", "outcome"])
        for style, loop in loops.items():
            for outcome, n in dict(loop.stats.requests).items():
                requests.add_metric([style, outcome], n)
        yield requests
        for name, (text, count) in COUNTERS.items():
            counter = CounterMetricFamily(P + name, text, labels=["style"])
            for style, loop in loops.items():
                counter.add_metric([style], count(loop))
            yield counter
        for name, (text, value) in GAUGES.items():
            gauge = GaugeMetricFamily(P + name, text, labels=["style"])
            for style, loop in loops.items():
                gauge.add_metric([style], value(loop))
            yield gauge
        info = GaugeMetricFamily(P + "model_info", "The model version each style serves.",
                                 labels=["style", "version"])
        for style, loop in loops.items():
            info.add_metric([style, loop.version], 1)
        yield info
        yield GaugeMetricFamily(P + "blas_threads",
                                "OpenBLAS threads a step uses now (0: not set yet).",
                                value=self.engine.blas.current or 0)
        yield _latency(loops)


def _latency(loops: dict[str, StyleWorker]) -> HistogramMetricFamily:
    """Request latency, submit to last character, in seconds (Prometheus' base unit)."""
    family = HistogramMetricFamily(P + "latency_seconds",
                                   "Request latency, submit to last character.",
                                   labels=["style"])
    bounds = [f"{ms / 1000:g}" for ms in LATENCY_BUCKETS_MS] + ["+Inf"]
    for style, loop in loops.items():
        counts = list(loop.stats.latency_counts)  # a copy: the loop thread adds to it
        total, buckets = 0, []
        for bound, n in zip(bounds, counts, strict=True):
            total += n
            buckets.append((bound, total))
        family.add_metric([style], buckets, loop.stats.latency_sum_ms / 1000)
    return family


def registry_for(engine: Engine) -> CollectorRegistry:
    """A fresh registry with the engine's metrics and this process's."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
