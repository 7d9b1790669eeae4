"""The training text of a base model: its styles' training parts, no held-out text.

A base (``[bases.NAME]`` in config.toml) is a language model that styles fine-tune
from, so it must never read what any style is scored on. Its corpus is written from
each listed style's training part (the text before ``corpus.val_start``), and then
every line that also occurs in the held-out part of *any* style is left out, because
corpora overlap (the all-cultures proverbs hold every variant's proverbs). Blank lines
are kept: they are paragraph breaks, not text. The file is rewritten only when a
source corpus changes; ``python -m training train NAME`` calls ``build`` first.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from genmodels.styles import Style, StyleBook
from training import corpus as corpora


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
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        for name in base.sources:
            text = training_part(book.get(name))
            for line in text.splitlines(keepends=True):
                if line.rstrip("\n") in banned:
                    dropped += 1
                    continue
                kept += 1
                out.write(line)
            if not text.endswith("\n\n"):
                out.write("\n" if text.endswith("\n") else "\n\n")  # sources never run together
    tmp.replace(base.corpus)
    stamp.write_text(json.dumps(key))
    print(f"{base.name}: {kept:,} lines from {', '.join(base.sources)} "
          f"({dropped:,} held-out lines of other styles left out) -> {base.corpus}", flush=True)
    return base.corpus
