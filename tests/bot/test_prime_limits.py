"""Long primes and characters a model has never seen, through the real core (tiny model,
SQLite): the length limit holds after look-alikes are spelled out, and the note about
dropped characters names each one once, capped.

    .venv/bin/python -m pytest tests/bot/test_prime_limits.py -q
"""
from __future__ import annotations

from bot.core import Request
from bot.text import dropped_note, prime_too_long, spelled_out_length
from storage.models import Request as RequestRow

NOTE = "(I left out characters this model has never seen: "


def req(text: str) -> Request:
    return Request("telegram", "c1", "42", user_name="u42", text=text)


def test_the_limit_applies_to_the_prime_as_the_model_reads_it(chat):
    ellipses = "\N{HORIZONTAL ELLIPSIS}" * 400  # 400 characters, 1,200 spelled out
    ligatures = "\ufdfa" * 100  # one character each, 18 once NFKC spells them out

    async def scenario():
        core = chat.core(max_prime_chars=1000)
        for prime, spelled in ((ellipses, "1,200"), (ligatures, "1,800")):
            reply = await core.handle(req("/tiny " + prime))
            assert reply.text.startswith(f"That text is {spelled} characters long once")
            assert "I read at most 1,000" in reply.text and reply.rate_generation is None
        fits = await core.handle(req("/tiny " + "the cat " * 125))  # exactly 1,000
        assert fits.rate_generation is not None
    chat.run(scenario)
    outcomes = [r.outcome for r in sorted(chat.rows(RequestRow), key=lambda r: r.id)]
    assert outcomes == ["bad_input", "bad_input", "ok"]


def test_dropped_characters_are_named_once_and_capped(chat):
    faces = [chr(0x1F600 + i) for i in range(30)]  # none of them in the tiny corpus

    async def scenario():
        core = chat.core(max_prime_chars=2100)
        one = await core.handle(req("/tiny the " + "\N{GRINNING FACE}" * 2000))
        assert one.text.endswith(NOTE + "\N{GRINNING FACE})"), one.text[-80:]
        many = await core.handle(req("/tiny the " + "".join(faces) * 60))
        note = many.text[many.text.index(NOTE):]
        assert note == NOTE + " ".join(faces[:10]) + " and 20 more)"
    chat.run(scenario)


def test_the_helpers():
    assert spelled_out_length("ab") == 2 and spelled_out_length("a\N{EM DASH}") == 3
    assert prime_too_long("x" * 10, 10) is None
    assert prime_too_long("x" * 11, 10).startswith("That text is 11 characters long;")
    assert dropped_note("aba\udcff") == "a b U+DCFF"  # a lone surrogate stays printable
    assert dropped_note("abc", limit=2) == "a b and 1 more"
