"""Latency p50/p95 per style and per model version (the figures /stats shows)."""
from __future__ import annotations

import pytest

from storage.log import log_request
from storage.stats import latency_percentiles, percentile


def test_percentile_interpolates_like_numpy():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.5) == 25.0
    assert percentile(values, 0.95) == pytest.approx(38.5)
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_percentiles_per_style_and_version_count_ok_requests_only(session, record):
    for ms in range(1, 101):  # 1..100 ms on version a1
        log_request(session, record(model_version="a1", latency_ms=ms))
    log_request(session, record(model_version="a2", latency_ms=1000))
    log_request(session, record(outcome="error", text=None, latency_ms=99999,
                                model_version="a2", error="boom"))
    log_request(session, record(style="sotu", command="sotu", model_version="s1",
                                latency_ms=5))
    austen, sotu = latency_percentiles(session)
    assert (austen.key, austen.count) == ("austen", 101)
    assert austen.p50_ms == 51.0 and austen.p95_ms == 96.0
    assert (sotu.key, sotu.count, sotu.p50_ms, sotu.p95_ms) == ("sotu", 1, 5.0, 5.0)
    a1, a2 = latency_percentiles(session, by="version", style="austen")
    assert (a1.key, a1.p50_ms, a1.p95_ms) == ("a1", 50.5, pytest.approx(95.05))
    assert (a2.key, a2.count, a2.p95_ms) == ("a2", 1, 1000.0)  # the error is not counted
