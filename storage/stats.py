"""Usage, latency and rating figures per style and per model version.

Request counts and rating counts come from two separate GROUP BY queries and are then
merged: joining ratings onto requests in one query would count a request once per
rating. These figures decide which temperature and which model we serve, so a vote
must count exactly once.

    from storage.stats import style_stats, version_stats
    for s in style_stats(session): print(s.key, s.requests, s.mean_latency_ms, s.up, s.down)
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from storage.models import Generation, Outcome, Rating, Request


@dataclass(frozen=True)
class UsageStats:
    key: str  # the style or the model version
    requests: int = 0
    ok: int = 0
    errors: int = 0  # the model failed, or the reply was undelivered
    rejected: int = 0  # rate-limited, bad input or busy
    mean_latency_ms: float | None = None  # over ok requests
    max_latency_ms: int | None = None
    up: int = 0
    down: int = 0

    @property
    def approval(self) -> float | None:
        """Share of +1 among ratings, or None without ratings."""
        total = self.up + self.down
        return self.up / total if total else None


def style_stats(session: Session, since: dt.datetime | None = None) -> list[UsageStats]:
    """One row per style that has requests (since ``since``), sorted by style."""
    return _usage(session, Request.style, since, None)


def version_stats(session: Session, style: str | None = None,
                  since: dt.datetime | None = None) -> list[UsageStats]:
    """One row per model version (of one style, if given), sorted by version."""
    return _usage(session, Request.model_version, since, style)


# Counted as errors: the model failed, or its text never reached the user.
_FAILED = (Outcome.ERROR.value, Outcome.UNDELIVERED.value)


def _usage(session, key_column, since, style) -> list[UsageStats]:
    filters = [key_column.is_not(None)]
    if since is not None:
        filters.append(Request.created_at >= since)
    if style is not None:
        filters.append(Request.style == style)
    ok = Request.outcome == Outcome.OK.value
    counts = session.execute(
        select(key_column, func.count(),
               func.sum(case((ok, 1), else_=0)),
               func.sum(case((Request.outcome.in_(_FAILED), 1), else_=0)),
               func.avg(case((ok, Request.latency_ms))),
               func.max(case((ok, Request.latency_ms))))
        .where(*filters).group_by(key_column)).all()
    votes = dict(
        (key, (int(up), int(down))) for key, up, down in session.execute(
            select(key_column, func.sum(case((Rating.value > 0, 1), else_=0)),
                   func.sum(case((Rating.value < 0, 1), else_=0)))
            .join(Generation, Generation.id == Rating.generation_id)
            .join(Request, Request.id == Generation.request_id)
            .where(*filters).group_by(key_column)))
    rows = []
    for key, n, n_ok, n_err, mean, worst in counts:
        up, down = votes.get(key, (0, 0))
        rows.append(UsageStats(key=key, requests=n, ok=int(n_ok), errors=int(n_err),
                               rejected=n - int(n_ok) - int(n_err),
                               mean_latency_ms=None if mean is None else float(mean),
                               max_latency_ms=worst, up=up, down=down))
    return sorted(rows, key=lambda r: r.key)


# Percentiles: SQLite has no percentile function and PostgreSQL's percentile_cont is not
# portable, so the ok latencies of each key are fetched (one integer per request) and
# ranked here. For a chat bot's volumes (thousands of requests a day) that is cheap;
# pass ``since`` to bound it.

@dataclass(frozen=True)
class LatencyPercentiles:
    key: str  # the style or the model version
    count: int  # ok requests with a latency
    p50_ms: float
    p95_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default method)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def latency_percentiles(session: Session, by: str = "style", style: str | None = None,
                        since: dt.datetime | None = None) -> list[LatencyPercentiles]:
    """p50 and p95 of ok requests' latency per style (``by="style"``) or model version
    (``by="version"``, of one style if given), sorted by key."""
    key_column = {"style": Request.style, "version": Request.model_version}[by]
    filters = [key_column.is_not(None), Request.outcome == Outcome.OK.value,
               Request.latency_ms.is_not(None)]
    if since is not None:
        filters.append(Request.created_at >= since)
    if style is not None:
        filters.append(Request.style == style)
    groups: dict[str, list[float]] = {}
    for key, ms in session.execute(select(key_column, Request.latency_ms).where(*filters)):
        assert key is not None and ms is not None  # the filters leave out NULLs
        groups.setdefault(key, []).append(float(ms))
    rows = []
    for key, values in sorted(groups.items()):
        values.sort()
        rows.append(LatencyPercentiles(key, len(values), percentile(values, 0.5),
                                       percentile(values, 0.95)))
    return rows
