"""Character vocabulary: a sorted, self-describing char <-> id mapping.

Many copies of the classic recipes build the vocabulary as ``list(set(text))``; set
order depends on string hashing, which changes between processes, so a reloaded model
reads the wrong ids and writes gibberish (and weights shipped without their vocabulary
cannot be used at all). Here the vocabulary is the *sorted* list of distinct characters,
stored in the artifact, so ids are identical in every process and on every machine.

Policy for characters the vocabulary has never seen (documented in README.md):
  1. a known character is used as it is;
  2. otherwise its look-alike is tried: Unicode NFKC normalisation, then a small table
     (curly quotes -> straight, dashes -> '-', NBSP -> space, ...), and the reverse of
     that table, so a corpus with only curly quotes still accepts a typed ``"``;
     the replacement is used if *all* its characters are known;
  3. otherwise the character is dropped, and reported in ``Encoded.dropped`` so callers
     can tell the user.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

# Look-alikes people type (or phones autocorrect to) that corpora often spell otherwise.
LOOKALIKES = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "--", "\u2212": "-", "\u2026": "...",
    "\u00a0": " ", "\t": " ", "\r": "",
}
# The reverse direction: a straight quote typed for a corpus that only has curly ones.
REVERSE_LOOKALIKES = {"'": "\u2019", '"': "\u201c", "-": "\u2014", " ": "\u00a0"}


@dataclass(frozen=True)
class Encoded:
    """Ids for a text, plus the characters the policy had to drop."""

    ids: list[int]
    dropped: str


class Vocabulary:
    """Sorted list of characters; id = position in the list."""

    def __init__(self, chars: str | list[str]):
        chars = list(chars)
        if sorted(set(chars)) != chars:
            raise ValueError("vocabulary must be sorted and free of duplicates")
        if not chars:
            raise ValueError("vocabulary is empty")
        self.chars: list[str] = chars
        self.index: dict[str, int] = {ch: i for i, ch in enumerate(chars)}
        # Code points as a sorted array: vectorised encoding of big texts.
        self._codes = np.array([ord(c) for c in chars], dtype=np.int64)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    def _substitute(self, ch: str) -> str | None:
        for candidate in (unicodedata.normalize("NFKC", ch), LOOKALIKES.get(ch),
                          REVERSE_LOOKALIKES.get(ch)):
            if candidate is not None and all(c in self.index for c in candidate):
                return candidate
        return None

    def encode(self, text: str) -> Encoded:
        """Ids for ``text`` under the unseen-character policy in the module docstring."""
        ids: list[int] = []
        dropped: list[str] = []
        for ch in text:
            if ch in self.index:
                ids.append(self.index[ch])
                continue
            sub = self._substitute(ch)
            if sub is None:
                dropped.append(ch)
            else:
                ids.extend(self.index[c] for c in sub)
        return Encoded(ids, "".join(dropped))

    def encode_exact(self, text: str) -> np.ndarray:
        """Vectorised ids for a text made only of known characters (training data)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.searchsorted(self._codes, codes)
        ids = np.minimum(ids, len(self._codes) - 1)
        bad = self._codes[ids] != codes
        if bad.any():
            raise ValueError(f"character {chr(int(codes[bad][0]))!r} is not in the vocabulary")
        return ids.astype(np.uint16)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)
