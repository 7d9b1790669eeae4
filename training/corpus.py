"""Corpus preparation: sha256, vocabulary, fixed train/val split, id files on disk.

Everything streams: the corpus is read a line at a time and ids are written as uint16
files (``train.u16``, ``val.u16``) that tf.data and the evaluator read from disk, so a
corpus larger than memory works. The split is fixed: the last ``val_fraction`` of the
characters (from the first line that starts at or after that point) is held out and
never trained on. Prepared files are cached under ``var/cache/`` by corpus hash.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genmodels.vocab import Vocabulary
from settings import ROOT

CACHE = Path(os.environ.get("CORPUS_CACHE") or ROOT / "var" / "cache")  # env: tests, jobs
_FLUSH_CHARS = 1 << 20


class CorpusError(Exception):
    """The corpus cannot be used (missing, empty, too small); the message says why."""


class UnknownCharacter(CorpusError):
    """The corpus has a character the given vocabulary lacks (``genmodels/widen.py``)."""


@dataclass(frozen=True)
class Prepared:
    """A corpus turned into id files plus the facts the artifact records."""

    train_path: Path
    val_path: Path
    train_chars: int
    val_chars: int
    sha256: str
    total_chars: int

    def corpus_info(self, corpus: Path) -> dict:
        return {"path": _display(corpus), "sha256": self.sha256, "chars": self.total_chars,
                "train_chars": self.train_chars, "val_chars": self.val_chars}


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from f
    except FileNotFoundError:
        raise CorpusError(f"{path}: corpus file not found") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def scan(path: Path) -> tuple[str, int, str]:
    """(sha256, number of characters, sorted distinct characters) in one pass."""
    digest, count, chars = hashlib.sha256(), 0, set()
    for line in _lines(path):
        digest.update(line.encode("utf-8"))
        count += len(line)
        chars.update(line)
    if count == 0:
        raise CorpusError(f"{path}: corpus is empty")
    return digest.hexdigest(), count, "".join(sorted(chars))


def split_point(total_chars: int, val_fraction: float) -> int:
    return total_chars - math.ceil(total_chars * val_fraction)


def val_start(path: Path, total_chars: int, val_fraction: float) -> int:
    """Where the held-out part begins: the first line start at or after the cut point,
    so no story or speech is split; at the cut itself when that would leave less than
    half the intended held-out text (a corpus of a few very long lines)."""
    cut, pos = split_point(total_chars, val_fraction), 0
    for line in _lines(path):
        if pos >= cut:
            break
        pos += len(line)
    return pos if total_chars - pos >= (total_chars - cut) / 2 else cut


def heldout_lines(path: Path, val_fraction: float) -> set[str]:
    """The lines of ``path`` that are (partly) in its held-out split."""
    _, total, _ = scan(path)
    start, pos, out = val_start(path, total, val_fraction), 0, set()
    for line in _lines(path):
        pos += len(line)
        if pos > start:
            out.add(line.rstrip("\n"))
    return out


def prepare(path: Path, vocab: Vocabulary, val_fraction: float, seq_len: int,
            exclude: AbstractSet[str] = frozenset(), cache: Path = CACHE) -> Prepared:
    """Write (or reuse) the id files for a corpus under ``vocab`` and this split.

    ``exclude`` holds lines left out of the training part (another style's held-out
    text that this corpus also contains).
    """
    sha, total, _ = scan(path)
    key = hashlib.sha256("\0".join([sha, "".join(vocab.chars), repr(val_fraction),
                                    *sorted(exclude)]).encode()).hexdigest()[:16]
    folder = cache / key
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    else:
        meta = _write_ids(path, vocab, val_start(path, total, val_fraction), exclude, folder)
        meta |= {"sha256": sha, "total_chars": total}
        tmp = folder / f".meta.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)  # a concurrent reader sees all of it or nothing
    prepared = Prepared(folder / "train.u16", folder / "val.u16", meta["train_chars"],
                        meta["val_chars"], sha, total)
    if prepared.train_chars < seq_len + 1 or prepared.val_chars < 2:
        raise CorpusError(f"{path}: corpus too small ({total} characters) for training "
                          f"windows of {seq_len}")
    return prepared


def _write_ids(path: Path, vocab: Vocabulary, start: int, exclude: AbstractSet[str],
               folder: Path) -> dict:
    """Stream the corpus into train/val id files; the split falls at ``start``."""
    folder.mkdir(parents=True, exist_ok=True)
    counts, pending, pos = {"train": 0, "val": 0}, {"train": 0, "val": 0}, 0
    tmp = {part: folder / f".{part}.u16.tmp-{os.getpid()}" for part in counts}
    files = {part: open(p, "wb") for part, p in tmp.items()}
    buffers: dict[str, list[str]] = {"train": [], "val": []}

    def flush(part: str) -> None:
        text = "".join(buffers[part])
        buffers[part].clear()
        pending[part] = 0
        try:
            ids = vocab.encode_exact(text)
        except ValueError as exc:
            raise UnknownCharacter(f"{path}: {exc} (it was built from another corpus)") from None
        files[part].write(ids.astype("<u2").tobytes())
        counts[part] += len(ids)

    try:
        for line in _lines(path):
            cut = min(max(start - pos, 0), len(line))  # chars of this line before the split
            pos += len(line)
            excluded = bool(exclude) and line.rstrip("\n") in exclude
            for part, text in (("train", line[:cut]), ("val", line[cut:])):
                if text and not (part == "train" and excluded):
                    buffers[part].append(text)
                    pending[part] += len(text)
                    if pending[part] >= _FLUSH_CHARS:
                        flush(part)
        for part in counts:
            flush(part)
        for f in files.values():
            f.close()
        for part, p in tmp.items():
            os.replace(p, folder / f"{part}.u16")
    except BaseException:
        for f in files.values():
            f.close()
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise
    return {"train_chars": counts["train"], "val_chars": counts["val"]}


def read_ids(path: Path) -> np.ndarray:
    """Memory-mapped ids (no copy into RAM)."""
    return np.memmap(path, dtype="<u2", mode="r")
