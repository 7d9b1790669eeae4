"""The command handlers' storage work and admin reports: small ``fn(session, ...)``
functions that ``Database.run`` runs off the event loop (bot/commands.py calls them).

    lines = await db.run(stats_lines)   # what /stats shows
"""
from __future__ import annotations

from bot.identity import chat_row_id, user_row_id
from bot.messages import UserError
from bot.text import THUMBS_DOWN, THUMBS_UP
from genmodels.styles import Style, StyleBook
from storage.bandit import evidence
from storage.errors import NotFound
from storage.settings import clear_temperature, set_temperature
from storage.stats import latency_percentiles, style_stats, version_stats
from training.ngram import best_cached  # NumPy only: reads the cache, never computes

# Registry operations that import neither NumPy nor TensorFlow: safe in the chat process.
from training.registry_ops import list_versions, queue_retrain, rollback as registry_rollback


def set_chat_temperature(session, request, value: float):
    return set_temperature(session, value, by_user_id=user_row_id(session, request),
                           chat_id=chat_row_id(session, request))


def set_style_temperature(session, request, style: str, value: float):
    return set_temperature(session, value, by_user_id=user_row_id(session, request),
                           style=style)


def reset_temperature(session, request, style: str | None):
    who = user_row_id(session, request)
    if style is None:
        return clear_temperature(session, by_user_id=who, chat_id=chat_row_id(session, request))
    return clear_temperature(session, by_user_id=who, style=style)


def queue_style_retrain(session, request, style: Style) -> tuple[int, bool]:
    run, new = queue_retrain(session, style.name, by_user_id=user_row_id(session, request),
                             minutes=style.training.minutes)
    return run.id, new


def baselines(styles: list[Style], book: StyleBook) -> dict[str, tuple[float, int] | None]:
    """Each style's best cached n-gram baseline (nats/char, order), or None."""
    return {style.name: best_cached(style, book) for style in styles}


def _versus(val_loss: float | None, baseline: tuple[float, int] | None) -> str:
    """A version's held-out loss against the baseline: the margin, positive when better."""
    if val_loss is None or baseline is None:
        return ""
    return f"; n-gram {baseline[0]:.4f}, margin {baseline[0] - val_loss:+.4f}"


def model_lines(session, names: list[str], served: dict[str, str],
                 baselines: dict[str, tuple[float, int] | None]) -> list[str]:
    lines = []
    for name in names:
        lines.append(f"{name} (serving: {served.get(name, 'not loaded yet')})")
        base = baselines.get(name)
        lines.append(f"  n-gram baseline {base[0]:.4f} nats/char (order {base[1]})" if base
                     else f"  baseline not computed (python -m training baseline {name})")
        versions = list_versions(session, name, limit=5)
        lines += ["  " + v.line() + _versus(v.val_loss, base) for v in versions] \
            or ["  no versions registered"]
    return lines


def stats_lines(session) -> list[str]:
    lines = []
    for by, rows in (("style", style_stats(session)), ("version", version_stats(session))):
        pct = {p.key: p for p in latency_percentiles(session, by=by)}
        lines.append(f"Per {by}: requests (ok/errors/rejected), ratings, latency p50/p95")
        for r in rows:
            p = pct.get(r.key)
            lat = f"{p.p50_ms:.0f}/{p.p95_ms:.0f} ms" if p else "no latency yet"
            lines.append(f"  {r.key}: {r.requests} ({r.ok}/{r.errors}/{r.rejected}), "
                         f"{THUMBS_UP}{r.up} {THUMBS_DOWN}{r.down}, {lat}")
        if not rows:
            lines.append("  nothing yet")
    return lines


def evidence_lines(session, styles: list[str], rng, config) -> list[str]:
    return [line for style in styles
            for line in evidence(session, style, rng, config).lines()]


def rollback_version(session, style: str) -> str:
    """/rollback: re-activate the version before the active one, in the database and
    the ACTIVE marker that serving reads (one unit of work); a one-line report."""
    try:
        old, new = registry_rollback(session, style)
    except NotFound as exc:
        raise UserError(f"Cannot roll back: {exc}.") from None
    return f"{style}: now serving {new} again (was {old})."
