"""The training text of a base model: its styles' training parts, no held-out text.

A base (``[bases.NAME]`` in config.toml) is a language model that styles fine-tune
from, so it must never read what any style is scored on. Its corpus is written from
each listed style's training part (the text before ``corpus.val_start``), and then
every line that also occurs in the held-out part of *any* style is left out, because
corpora overlap (the all-cultures proverbs hold every variant's proverbs). Blank lines
are kept: they are paragraph breaks, not text. The sources are cut into pieces of
about ``CHUNK_CHARS`` that end at a blank line (for one-line stories, wherever they
reach the size) and shuffled together with a fixed seed. The file is rewritten only when a
source corpus changes; ``python -m training train NAME`` calls ``build`` first.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from genmodels.styles import Style, StyleBook
from training import corpus as corpora

CHUNK_CHARS = 20_000  # interleaving unit: well under the shuffle buffer's ~1M chars


def training_part(style: Style) -> str:
    """The text of ``style``'s corpus that its model trains on."""
    _, total, _ = corpora.scan(style.corpus)
    start = corpora.val_start(style.corpus, total, style.training.val_fraction)
    return style.corpus.read_text(encoding="utf-8")[:start]


def heldout(book: StyleBook) -> set[str]:
    """Every non-blank line that is (partly) held out by some style."""
    out: set[str] = set()
    for style in book.styles.values():
        try:
            out |= corpora.heldout_lines(style.corpus, style.training.val_fraction)
        except corpora.CorpusError:  # an empty corpus holds nothing out
            continue
    return {line for line in out if line.strip()}


def chunks(lines: list[str], size: int = CHUNK_CHARS) -> list[str]:
    """Consecutive lines joined into pieces of about ``size`` characters.

    In prose (a text with blank lines) a piece ends at a blank line, so two sources
    never run together mid-paragraph; in one-story-per-line text at any line end.
    """
    prose = any(not line.strip() for line in lines)
    out, buf, n = [], [], 0
    for line in lines:
        buf.append(line)
        n += len(line)
        if n >= size and (not prose or not line.strip()):
            out.append("".join(buf))
            buf, n = [], 0
    if buf:
        end = "\n\n" if prose else "\n"
        out.append("".join(buf).rstrip("\n") + end)
    return out


def _sources_key(base: Style, book: StyleBook) -> str:
    parts = [base.name] + [f"{s.name}:{s.corpus.stat().st_size}:{s.corpus.stat().st_mtime_ns}:"
                           f"{s.training.val_fraction}" for s in book.styles.values()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def build(base: Style, book: StyleBook) -> Path:
    """Write (or keep, when up to date) the corpus file of ``base``; returns its path."""
    key = _sources_key(base, book)
    stamp = base.corpus.with_suffix(".json")
    if base.corpus.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        return base.corpus
    banned = heldout(book)
    base.corpus.parent.mkdir(parents=True, exist_ok=True)
    tmp = base.corpus.with_suffix(".tmp")
    kept = dropped = 0
    pieces = []
    for name in base.sources:
        lines = training_part(book.get(name)).splitlines(keepends=True)
        clean = [line for line in lines if line.rstrip("\n") not in banned]
        kept, dropped = kept + len(clean), dropped + len(lines) - len(clean)
        pieces += chunks(clean)
    # Training reads the file in order through a bounded shuffle buffer: sources laid
    # end to end would be learned one after another, each one forgetting the last.
    order = np.random.default_rng(0).permutation(len(pieces))
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        out.writelines(pieces[i] for i in order)
    tmp.replace(base.corpus)
    stamp.write_text(json.dumps(key))
    print(f"{base.name}: {kept:,} lines from {', '.join(base.sources)} "
          f"({dropped:,} held-out lines of other styles left out) -> {base.corpus}", flush=True)
    return base.corpus
