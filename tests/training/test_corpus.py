"""Corpus preparation: scan, the fixed train/val split, id files, cache, excluded lines."""
import hashlib

import numpy as np
import pytest

from genmodels.vocab import Vocabulary
from training import corpus as corpora
from training.corpus import CorpusError, heldout_lines, prepare, read_ids, scan

LINES = [f"line {i:02d} of the corpus\n" for i in range(40)]  # 23 chars each
TEXT = "".join(LINES)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_scan_hashes_counts_and_lists_characters(tmp_path):
    path = tmp_path / "ru.txt"
    text = "Мир\r\nмир, \u201cmir\u201d\n"
    path.write_bytes(text.encode("utf-8"))
    sha, count, chars = scan(path)
    assert sha == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert count == len(text)  # characters, not bytes; "\r\n" kept as it is
    assert chars == "".join(sorted(set(text)))


@pytest.mark.parametrize("content,words", [(b"", "empty"), (b"\xff\xfe\x00bad", "UTF-8")])
def test_unusable_corpus_raises_corpus_error(tmp_path, content, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=words) as info:
        scan(path)
    assert str(path) in str(info.value)


def test_missing_corpus_raises_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        scan(tmp_path / "absent.txt")


def test_prepare_splits_at_a_line_boundary_and_round_trips(corpus, tmp_path):
    vocab = Vocabulary.from_text(TEXT)
    data = prepare(corpus, vocab, 0.1, seq_len=8, cache=tmp_path / "cache")
    assert data.total_chars == len(TEXT) == data.train_chars + data.val_chars
    assert data.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    cut = corpora.split_point(len(TEXT), 0.1)
    train = vocab.decode(read_ids(data.train_path))
    val = vocab.decode(read_ids(data.val_path))
    assert train + val == TEXT
    assert val.startswith("line ") and train.endswith("\n")  # whole lines only
    assert len(train) >= cut and len(train) - len(LINES[0]) < cut  # first line at/after cut
    assert set(val.splitlines()) == heldout_lines(corpus, 0.1)
    info = data.corpus_info(corpus)
    assert (info["chars"], info["train_chars"], info["val_chars"]) == \
        (len(TEXT), len(train), len(val))


def test_prepare_reuses_its_cache_and_keys_it_by_vocabulary(corpus, tmp_path):
    cache = tmp_path / "cache"
    vocab = Vocabulary.from_text(TEXT)
    first = prepare(corpus, vocab, 0.1, 8, cache=cache)
    stamp = first.train_path.stat().st_mtime_ns
    again = prepare(corpus, vocab, 0.1, 8, cache=cache)
    assert again == first and again.train_path.stat().st_mtime_ns == stamp
    wider = prepare(corpus, Vocabulary.from_text(TEXT + "XYZ"), 0.1, 8, cache=cache)
    assert wider.train_path.parent != first.train_path.parent
    assert read_ids(wider.train_path).max() > read_ids(first.train_path).max()
    other_split = prepare(corpus, vocab, 0.2, 8, cache=cache)
    assert other_split.val_chars > first.val_chars
    assert len(list(cache.iterdir())) == 3


def test_prepare_excludes_lines_from_training_only(corpus, tmp_path):
    vocab = Vocabulary.from_text(TEXT)
    exclude = {LINES[3].rstrip("\n"), LINES[-1].rstrip("\n")}  # one train, one val line
    data = prepare(corpus, vocab, 0.1, 8, exclude=exclude, cache=tmp_path / "cache")
    train = vocab.decode(read_ids(data.train_path))
    val = vocab.decode(read_ids(data.val_path))
    assert LINES[3] not in train and train.count("\n") == len(LINES) - 1 - val.count("\n")
    assert val.endswith(LINES[-1])


def test_variant_heldout_lines_are_kept_out_of_the_parent_training_text(tmp_path):
    variant = tmp_path / "variant.txt"
    variant.write_text("".join(LINES[:20]), encoding="utf-8")
    parent = tmp_path / "parent.txt"
    parent.write_text(TEXT, encoding="utf-8")  # contains every variant line
    held = heldout_lines(variant, 0.1)
    assert held and held <= set(TEXT.splitlines())
    vocab = Vocabulary.from_text(TEXT)
    data = prepare(parent, vocab, 0.1, 8, exclude=held, cache=tmp_path / "cache")
    train = vocab.decode(read_ids(data.train_path)).splitlines()
    assert not held & set(train)


def test_prepare_rejects_a_corpus_too_small_for_a_window(corpus, tmp_path):
    with pytest.raises(CorpusError, match="too small") as info:
        prepare(corpus, Vocabulary.from_text(TEXT), 0.1, seq_len=len(TEXT),
                cache=tmp_path / "cache")
    assert str(corpus) in str(info.value)


def test_prepare_rejects_characters_outside_the_vocabulary(corpus, tmp_path):
    with pytest.raises(CorpusError, match="another corpus"):
        prepare(corpus, Vocabulary.from_text("line 0123"), 0.1, 8, cache=tmp_path / "cache")


def test_read_ids_is_a_uint16_memory_map(corpus, tmp_path):
    data = prepare(corpus, Vocabulary.from_text(TEXT), 0.1, 8, cache=tmp_path / "cache")
    ids = read_ids(data.train_path)
    assert isinstance(ids, np.memmap) and ids.dtype == np.dtype("<u2")
    assert len(ids) == data.train_chars


def test_a_corpus_without_newlines_can_be_prepared(tmp_path):
    path = tmp_path / "one_line.txt"
    path.write_text("word " * 2000, encoding="utf-8")  # 10,000 characters, no newline
    data = prepare(path, Vocabulary.from_text("word "), 0.1, 16, cache=tmp_path / "cache")
    assert data.val_chars > 0


def test_a_failed_prepare_leaves_no_temporary_files(corpus, tmp_path):
    with pytest.raises(CorpusError):
        prepare(corpus, Vocabulary.from_text("line 0123"), 0.1, 8, cache=tmp_path / "cache")
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []
