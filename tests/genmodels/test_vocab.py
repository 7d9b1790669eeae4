"""Vocabulary: sorted and process-independent ids, and the unseen-character policy."""
import json
import subprocess
import sys

import numpy as np
import pytest

from genmodels.vocab import Vocabulary

# Enough distinct characters that set() order almost surely differs between hash seeds.
MANY_CHARS = ("The quick brown fox jumps over the lazy dog! 0123456789 "
              "Съешь же ещё этих мягких французских булок, да выпей чаю.\n\"'-—…")

CHILD = """
import json, sys
from genmodels.vocab import Vocabulary
from training.corpus import scan
text = sys.stdin.read()
vocab = Vocabulary.from_text(text)
_, _, scanned = scan(sys.argv[1])
print(json.dumps({"chars": vocab.chars, "ids": vocab.encode(text).ids,
                  "scanned": scanned, "set_order": list(set(text))}))
"""


def test_vocabulary_is_identical_across_hash_seeds(tmp_path, env_for):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(MANY_CHARS, encoding="utf-8")
    results = []
    for seed in ("0", "1", "2", "12345"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(corpus)], input=MANY_CHARS,
                             capture_output=True, text=True, encoding="utf-8", timeout=60,
                             env=env_for(None, PYTHONHASHSEED=seed, PYTHONIOENCODING="utf-8"))
        assert out.returncode == 0, out.stderr
        results.append(json.loads(out.stdout))
    # The test has teeth: the recipes' list(set(text)) order really does change...
    assert len({tuple(r["set_order"]) for r in results}) > 1
    # ...while the vocabulary, the ids and the corpus scan do not.
    first = results[0]
    assert first["chars"] == sorted(set(MANY_CHARS))
    assert "".join(first["chars"]) == first["scanned"]
    for r in results[1:]:
        assert r["chars"] == first["chars"]
        assert r["ids"] == first["ids"]
        assert r["scanned"] == first["scanned"]


def test_ids_are_positions_in_sorted_order_and_round_trip():
    vocab = Vocabulary.from_text("banana bread\n")
    assert vocab.chars == sorted(set("banana bread\n"))
    assert len(vocab) == len(set("banana bread\n"))
    enc = vocab.encode("abba dab")
    assert enc.dropped == ""
    assert enc.ids == [vocab.chars.index(c) for c in "abba dab"]
    assert vocab.decode(enc.ids) == "abba dab"
    assert vocab.decode(np.array(enc.ids)) == "abba dab"


def test_encode_exact_matches_encode_and_rejects_unknown():
    text = MANY_CHARS * 3
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode_exact(text)
    assert ids.dtype == np.uint16
    assert ids.tolist() == vocab.encode(text).ids
    with pytest.raises(ValueError, match="'Z'"):
        Vocabulary.from_text("abc").encode_exact("abZc")
    # A character above every vocabulary code point must not wrap around to a valid id.
    with pytest.raises(ValueError):
        Vocabulary.from_text("abc").encode_exact("a\U0001F600")


@pytest.mark.parametrize("chars", ["ba", "aab", ""])
def test_vocabulary_must_be_sorted_unique_and_non_empty(chars):
    with pytest.raises(ValueError):
        Vocabulary(chars)


def test_vocabulary_equality_is_by_characters():
    assert Vocabulary("abc") == Vocabulary.from_text("cabbac")
    assert Vocabulary("abc") != Vocabulary("abd")
    assert "a" in Vocabulary("abc") and "z" not in Vocabulary("abc")


# --- the unseen-character policy (README: "Characters a model has never seen") ---

def test_curly_quotes_become_straight_when_only_straight_are_known():
    vocab = Vocabulary.from_text("say \"hi\" it's\n")
    enc = vocab.encode("say \u201chi\u201d it\u2019s")
    assert enc.dropped == ""
    assert vocab.decode(enc.ids) == "say \"hi\" it's"


def test_straight_quotes_become_curly_when_only_curly_are_known():
    vocab = Vocabulary.from_text("\u201chi\u201d it\u2019s")
    enc = vocab.encode('"hi" it\'s')
    assert enc.dropped == ""
    assert vocab.decode(enc.ids) == "\u201chi\u201c it\u2019s"


def test_lookalikes_dashes_ellipsis_nbsp_and_nfkc():
    vocab = Vocabulary.from_text("a-b. fi")
    enc = vocab.encode("a\u2014b\u2013a\u2026\u00a0\ufb01")  # em/en dash, ellipsis, nbsp, ligature
    assert enc.dropped == ""
    assert vocab.decode(enc.ids) == "a--b-a... fi"


def test_unknown_characters_are_dropped_in_order_and_reported():
    vocab = Vocabulary.from_text("abc ")
    enc = vocab.encode("a\u0436b\u263ac\u0436")
    assert vocab.decode(enc.ids) == "abc"
    assert enc.dropped == "\u0436\u263a\u0436"


def test_a_lookalike_is_used_only_if_all_its_characters_are_known():
    vocab = Vocabulary.from_text("ab")  # no '-' and no '.'
    enc = vocab.encode("a\u2014b\u2026")
    assert vocab.decode(enc.ids) == "ab"
    assert enc.dropped == "\u2014\u2026"


def test_case_is_not_folded():
    enc = Vocabulary.from_text("abc").encode("aBc")
    assert enc.dropped == "B"
