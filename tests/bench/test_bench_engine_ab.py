"""bench/engine_ab.py: a closed-loop level counts every worker's characters, and the
summary compares the two trees' medians level by level and counts the pairs won."""
import asyncio

from bench import engine_ab


def test_a_closed_loop_level_counts_the_characters_of_every_worker():
    sent = []

    async def generate(seed: int) -> int:
        sent.append(seed)
        await asyncio.sleep(0.001)  # every worker is suspended here at once
        return 10 + seed % 3

    got = asyncio.run(engine_ab.closed_loop(generate, level=8, requests=40))
    assert sorted(sent) == list(range(40))  # each request once, whatever the worker
    # "chars += await generate()" would keep one worker's count: it reads chars first.
    assert got["chars"] == sum(10 + s % 3 for s in range(40))
    assert got["chars_per_s"] > 0 and got["cpu_ms_per_1k_chars"] > 0


def run(c1: int, c8: int, c64: int, cpu: float = 1.0) -> dict:
    return {f"c{level}": {"chars_per_s": rate, "cpu_ms_per_1k_chars": cpu}
            for level, rate in ((1, c1), (8, c8), (64, c64))}


def test_the_summary_gives_medians_ratios_and_pairs_won_per_level():
    old = [run(100, 200, 400, 2.0), run(110, 210, 380, 3.0), run(90, 190, 420, 4.0)]
    new = [run(120, 180, 400, 1.0), run(100, 200, 390, 1.0), run(95, 230, 430, 5.0)]
    got = engine_ab.summary(old, new)
    assert got["c1"]["chars_per_s_median_old"] == 100
    assert got["c1"]["chars_per_s_median_new"] == 100
    assert got["c1"]["ratio_new_over_old"] == 1.0
    assert got["c1"]["pairs_new_faster"] == 2  # 120 > 100, 95 > 90; 100 < 110
    assert got["c8"]["pairs_new_faster"] == 1  # only 230 > 190
    assert got["c64"]["pairs_new_faster"] == 2  # 400 = 400 is no win
    assert got["c64"]["ratio_new_over_old"] == round(400 / 400, 3)
    assert got["c1"]["cpu_ms_per_1k_chars_median_old"] == 3.0
    assert got["c1"]["cpu_ms_per_1k_chars_median_new"] == 1.0


def test_the_chat_summary_gives_medians_and_the_pairs_where_new_was_lower():
    def chat(p50, p95, wall):
        return {"p50_ms": p50, "p95_ms": p95, "burst_wall_s": wall}

    old = [chat(40.0, 50.0, 3.0), chat(30.0, 60.0, 3.2)]
    new = [chat(35.0, 50.0, 3.1), chat(31.0, 40.0, 2.9)]
    got = engine_ab.chat_summary(old, new)
    assert got["p50_ms"] == {"median_old": 35.0, "median_new": 33.0, "pairs_new_lower": 1}
    assert got["p95_ms"]["pairs_new_lower"] == 1  # 50 = 50 is not lower
    assert got["burst_wall_s"] == {"median_old": 3.1, "median_new": 3.0,
                                   "pairs_new_lower": 1}
