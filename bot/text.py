"""Text helpers every adapter shares: command parsing, message splitting, rating buttons.

Pure functions, no I/O, so the rules live once and are tested without a platform.

    >>> parse_command("/austen@mybot It is a truth", "mybot")
    Parsed(command='austen', args='It is a truth', other_bot=False)
    >>> split_message("a" * 5000, 4096)[0][:3]
    'aaa'
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import NamedTuple

from genmodels.vocab import LOOKALIKES, REVERSE_LOOKALIKES

RATE_PREFIX = "rate"  # callback data: f"rate:{generation_id}:{+1|-1}"
# The apology for a failure on the bot's side (a bug, a platform error), everywhere.
SORRY = "Sorry, something went wrong on my side. Please try again in a moment."
THUMBS_UP, THUMBS_DOWN = "\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}"
_MAX_GENERATION_ID = 2**63 - 1
_RATE_RE = re.compile(rf"^{RATE_PREFIX}:([0-9]{{1,19}}):([+-]1)$")
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?$")
_SENTENCE_END = re.compile(r"[.!?…;:»\"')\]]\s")
MAX_DROPPED_SHOWN = 10  # distinct characters a "left out" note names


class Parsed(NamedTuple):
    command: str  # lower-case name without "/" and "@bot"; "" when the text is no command
    args: str  # everything after the command word, stripped
    other_bot: bool  # "/cmd@someone_else": the platform convention is to stay silent


def parse_command(text: str, bot_username: str = "") -> Parsed:
    """Split ``/cmd@bot args``; a text without a leading valid command gives command ""."""
    text = (text or "").strip()
    word, _, rest = text.partition(" ") if " " in text else (text, "", "")
    # A newline right after the command is also a separator (multi-line primes).
    if "\n" in word:
        word, _, more = word.partition("\n")
        rest = more + (" " + rest if rest else "")
    match = _COMMAND_RE.match(word)
    if not match:
        return Parsed("", text, False)
    addressee = match.group(2)
    other = bool(addressee and bot_username
                 and addressee.lower() != bot_username.lstrip("@").lower())
    return Parsed(match.group(1).lower(), rest.strip(), other)


def rating_data(generation_id: int, value: int) -> str:
    """The callback data of one rating button."""
    return f"{RATE_PREFIX}:{int(generation_id)}:{'+1' if value > 0 else '-1'}"


def rating_buttons(generation_id: int) -> list[tuple[str, str]]:
    """[(label, callback_data)] for thumbs up and thumbs down (Telegram allows 64 bytes)."""
    return [(THUMBS_UP, rating_data(generation_id, +1)),
            (THUMBS_DOWN, rating_data(generation_id, -1))]


def parse_rating(data: str) -> tuple[int, int] | None:
    """(generation_id, +1|-1) from button data, or None when it was tampered with."""
    match = _RATE_RE.match(data or "")
    if not match:
        return None
    generation_id = int(match.group(1))
    if not 0 < generation_id <= _MAX_GENERATION_ID:
        return None
    return generation_id, int(match.group(2))


def _cut(text: str, limit: int) -> int:
    """Where to end the first chunk: a blank line, a line, a sentence, a space, else hard."""
    window = text[:limit + 1]  # a boundary right at the limit is fine
    for pattern in ("\n\n", "\n"):
        at = window.rfind(pattern, 0, limit + 1)
        if at > limit // 4:  # a boundary too early would leave tiny chunks
            return at + len(pattern)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] > limit // 4:
        return ends[-1]
    at = window.rfind(" ", 0, limit + 1)
    if at > limit // 4:
        return at + 1
    return limit


def split_message(text: str, limit: int) -> list[str]:
    """Chunks of at most ``limit`` characters, cut at a line or sentence boundary.

    Nothing is lost except the whitespace at a cut; an empty text gives no chunks.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    chunks, text = [], text.strip()
    while len(text) > limit:
        at = _cut(text, limit)
        head = text[:at].rstrip()
        if head:
            chunks.append(head)
        text = text[at:].lstrip()
    if text:
        chunks.append(text)
    return chunks


@functools.lru_cache(maxsize=4096)
def _widest(ch: str) -> int:
    return max(1, len(unicodedata.normalize("NFKC", ch)), len(LOOKALIKES.get(ch, "")),
               len(REVERSE_LOOKALIKES.get(ch, "")))


def spelled_out_length(text: str) -> int:
    """The most characters ``text`` can become once a model reads it.

    A character a model lacks is replaced by its look-alike where one is known
    (genmodels/vocab.py: NFKC, then the look-alike tables), and some are longer: "…" is
    "...", U+FDFA is 18 characters. Which model reads the prime is not known here, so
    each character counts as its longest replacement: a bound on the work it costs.
    """
    return sum(_widest(ch) for ch in text)


def prime_too_long(prime: str, limit: int) -> str | None:
    """The reply refusing ``prime``, or None when it fits ``limit`` also spelled out."""
    if len(prime) > limit:  # checked first: spelling out a huge prime costs time too
        return (f"That text is {len(prime):,} characters long; I read at most {limit:,}. "
                f"Please send a shorter one.")
    spelled = spelled_out_length(prime)
    if spelled > limit:
        return (f"That text is {spelled:,} characters long once characters such as "
                f"\N{HORIZONTAL ELLIPSIS} are spelled out (...); I read at most {limit:,}. "
                f"Please send a shorter one.")
    return None


def refused_params(exc: ValueError, source: str) -> str:
    """The reply when the sampler refuses a request's parameters (``exc``), the
    temperature having come from ``source`` ("chat", "style", ...).

    Every place that sets a temperature checks the sampler's bounds, but a setting
    stored before a bound existed (or a config value) can still be one it refuses:
    name the problem and who can fix it instead of "something went wrong".
    """
    if str(exc).startswith("temperature") and source == "chat":
        hint = "/temperature reset goes back to the default."
    else:
        hint = "Please tell the bot's admins."
    return f"Sorry, I cannot write with these settings: {exc}. {hint}"


def _shown(ch: str) -> str:
    # A lone surrogate or a control character would break the reply (or be invisible).
    return ch if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}"


def dropped_note(dropped: str, limit: int = MAX_DROPPED_SHOWN) -> str:
    """Each dropped character once, in order of appearance: the first ``limit`` of them,
    then "and N more" (N distinct characters).

    >>> dropped_note("\N{GRINNING FACE}" * 2100)
    '\N{GRINNING FACE}'
    """
    distinct = list(dict.fromkeys(dropped))
    shown = " ".join(_shown(ch) for ch in distinct[:limit])
    more = len(distinct) - limit
    return f"{shown} and {more} more" if more > 0 else shown
