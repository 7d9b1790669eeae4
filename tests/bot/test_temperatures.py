"""Temperatures learned from ratings in the core: the bandit's grid where nobody fixed a
value, the admin's or the chat's value where someone did, and the evidence in /stats.

Real SQLite and the real in-process engine on tiny models (the ``chat`` fixture); the
bandit's own convergence is tested in tests/storage/test_bandit.py.
"""
from __future__ import annotations

import numpy as np

from bot.commands import describe_source
from bot.core import Request
from storage.models import Request as RequestRow

GRID = {0.3, 0.5, 0.7, 0.9, 1.1}  # storage.bandit's default grid (no [bandit] in the config)
ADMIN = "1"


def req(text: str, user: str = "42", chat: str = "c1") -> Request:
    return Request("telegram", chat, user, user_name=f"u{user}", text=text)


def temperatures(chat) -> list[float]:
    rows = chat.rows(RequestRow, RequestRow.command == "tiny")
    return [r.temperature for r in sorted(rows, key=lambda r: r.id)]


def test_unfixed_requests_explore_the_grid_and_a_fixed_value_wins(chat):
    async def scenario():
        core = chat.core()
        core.rng = np.random.default_rng(0)
        shown = (await core.handle(req("/temperature"))).text
        assert "/tiny: " in shown and "learned from ratings: " in shown, shown
        assert "drawn afresh for every text" in shown
        for _ in range(12):
            assert (await core.handle(req("/tiny the"))).rate_generation is not None
        await core.handle(req("/temperature tiny 0.8", user=ADMIN))  # off the grid
        assert (await core.handle(req("/temperature tiny"))).text == \
            "tiny: 0.8 (set for this style by an admin)"
        for _ in range(2):
            await core.handle(req("/tiny the"))
        await core.handle(req("/temperature 0.2"))  # this chat's own value beats the style's
        for _ in range(2):
            await core.handle(req("/tiny the"))
        await core.handle(req("/tiny the", chat="c2"))  # another chat: the style's
        await core.handle(req("/temperature reset"))
        await core.handle(req("/temperature reset tiny", user=ADMIN))
        for _ in range(3):  # nobody fixes one any more: the bandit again
            await core.handle(req("/tiny the"))
    chat.run(scenario)
    used = temperatures(chat)
    assert len(used) == 20
    learned, style, here, other, again = used[:12], used[12:14], used[14:16], used[16], \
        used[17:]
    assert set(learned) <= GRID and len(set(learned)) > 1, learned  # explored, not fixed
    assert style == [0.8, 0.8] and here == [0.2, 0.2] and other == 0.8
    assert set(again) <= GRID


def test_learning_off_uses_the_config_default(chat):
    async def scenario():
        core = chat.core(learn_temperature=False)
        assert core.bandit is None
        shown = (await core.handle(req("/temperature"))).text
        assert "/tiny: 0.7 (default from config)" in shown
        await core.handle(req("/tiny the"))
        stats = (await core.handle(req("/stats", user=ADMIN))).text
        assert "learning from ratings is off" in stats
    chat.run(scenario)
    assert temperatures(chat) == [0.7]


def test_stats_shows_the_evidence_per_style(chat):
    async def scenario():
        core = chat.core()
        reply = await core.handle(req("/tiny the"))
        await core.rate(req(""), f"rate:{reply.rate_generation}:+1")
        await core.handle(req("/temperature fable_fox 0.6", user=ADMIN))
        return (await core.handle(req("/stats", user=ADMIN))).text
    stats = _run(chat, scenario)
    (rated,) = temperatures(chat)
    assert "Temperatures learned from ratings (per value:" in stats
    assert "tiny: temperature learned from ratings: no choice yet" in stats
    assert f"{rated:>4g}: +1/-0  approval ~67%  P(best) " in stats, stats
    assert "fable_fox: temperature 0.6, set by an admin (style)" in stats
    assert "  0.3: +0/-0  approval ~50%" in stats


def test_sources_read_as_words():
    assert describe_source("bandit: exploring 0.9") == "learned from ratings: exploring 0.9"
    assert describe_source("bandit: Thompson draw, 0.7 has +3/-1") == \
        "learned from ratings: Thompson draw, 0.7 has +3/-1"
    assert describe_source("chat") == "set for this chat"
    assert describe_source("default") == "default from config"


def _run(chat, scenario):
    box = []

    async def keep():
        box.append(await scenario())
    chat.run(keep)
    return box[0]
