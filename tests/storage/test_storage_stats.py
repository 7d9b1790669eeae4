"""Usage, latency and rating figures per style and per model version: nothing counted twice."""
from __future__ import annotations

import datetime as dt

from storage.log import get_or_create_user, log_request
from storage.ratings import rate
from storage.stats import style_stats, version_stats

T0 = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)


def test_figures_per_style_and_version(session, record):
    a1, a2 = "austen-1", "austen-2"
    gens = [log_request(session, record(model_version=a1, latency_ms=ms)).generation_id
            for ms in (100, 300)]
    log_request(session, record(model_version=a2, latency_ms=50))
    log_request(session, record(outcome="error", text=None, latency_ms=5000,
                                model_version=a2, error="boom"))
    log_request(session, record(outcome="rate_limited", text=None, model_version=None))
    log_request(session, record(style="sotu", command="sotu", model_version="sotu-1"))
    voters = [get_or_create_user(session, "telegram", f"v{i}") for i in range(3)]
    for voter in voters:  # three votes on one generation: the request still counts once
        rate(session, gens[0], voter, 1)
    rate(session, gens[1], voters[0], -1)

    austen, sotu = style_stats(session)
    assert (austen.key, austen.requests, austen.ok, austen.errors, austen.rejected) == (
        "austen", 5, 3, 1, 1)
    assert austen.mean_latency_ms == 150.0 and austen.max_latency_ms == 300  # ok only
    assert (austen.up, austen.down, austen.approval) == (3, 1, 0.75)
    assert (sotu.key, sotu.requests, sotu.up, sotu.approval) == ("sotu", 1, 0, None)

    v1, v2 = version_stats(session, style="austen")
    assert (v1.key, v1.requests, v1.up, v1.down, v1.mean_latency_ms) == (a1, 2, 3, 1, 200.0)
    assert (v2.key, v2.requests, v2.ok, v2.errors, v2.up) == (a2, 2, 1, 1, 0)
    assert [s.key for s in version_stats(session)] == [a1, a2, "sotu-1"]


def test_since_limits_the_window(session, record):
    log_request(session, record(created_at=T0 - dt.timedelta(days=2)))
    log_request(session, record(created_at=T0))
    (austen,) = style_stats(session, since=T0 - dt.timedelta(hours=1))
    assert austen.requests == 1
    assert style_stats(session, since=T0 + dt.timedelta(hours=1)) == []
