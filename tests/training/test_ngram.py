"""The modified Kneser-Ney n-gram baseline: hand-computed probabilities, normalisation,
large vocabularies, the held-out split it scores, its cache and ``training baseline``."""
import math
import re
from collections import Counter
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest

from genmodels.styles import load_styles
from genmodels.vocab import Vocabulary
from training import ngram
from training.ngram import KneserNey, baseline, cached_baseline

ROOT = Path(__file__).resolve().parents[2]
# 26 chars over a-d whose count-of-counts n1..n4 are all non-zero at every level of the
# order-2 and order-3 models, with every discount inside its range (no fallback, no clip).
HAND = "cbbbaaadcacaaadaaaadccaaca"
HAND_VOCAB = "abcde"  # "e" never occurs: it only gets the uniform share


def hand_model(order):
    return KneserNey(Vocabulary(HAND_VOCAB).encode_exact(HAND), len(HAND_VOCAB), order)


def ids(text):
    return Vocabulary(HAND_VOCAB).encode_exact(text)


def grams(text, n):
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def test_the_hand_counts_are_those_of_the_text():
    assert grams(HAND, 2) == {"aa": 8, "ac": 2, "ad": 3, "ba": 1, "bb": 2, "ca": 4,
                              "cb": 1, "cc": 1, "da": 1, "dc": 2}
    assert grams(HAND, 3) == {"aaa": 4, "aac": 1, "aad": 3, "aca": 2, "ada": 1, "adc": 2,
                              "baa": 1, "bba": 1, "bbb": 1, "caa": 2, "cac": 1, "cbb": 1,
                              "cca": 1, "daa": 1, "dca": 1, "dcc": 1}
    # continuation counts N1+(. w): distinct chars seen before w
    assert Counter(g[1:] for g in grams(HAND, 2)) == {"a": 4, "b": 2, "c": 3, "d": 1}
    assert Counter(g[1:] for g in grams(HAND, 3)) == {"aa": 4, "ac": 2, "ad": 1, "ba": 1,
                                                      "bb": 2, "ca": 3, "cc": 1, "da": 1,
                                                      "dc": 1}  # "cb" only starts the text


def unigram():
    """Lowest level, continuation counts a 4, b 2, c 3, d 1, e 0 (total 10).
    n1 = n2 = n3 = n4 = 1: Y = 1/(1+2) = 1/3, D1 = 1 - 2/3 = 1/3, D2 = 2 - 3/3 = 1,
    D3+ = 3 - 4/3 = 5/3; gamma = (1/3 * 1 + 1 * 1 + 5/3 * 2) / 10 = 7/15, over V = 5."""
    u = F(7, 15) / 5
    return {"a": (4 - F(5, 3)) / 10 + u, "b": (2 - 1) / F(10) + u,
            "c": (3 - F(5, 3)) / 10 + u, "d": (1 - F(1, 3)) / 10 + u, "e": u}


def bigram_raw():
    """Order-2 model, top level, raw counts. n1 = 4 (ba cb cc da), n2 = 3 (ac bb dc),
    n3 = 1 (ad), n4 = 1 (ca): Y = 4/10, D1 = 1 - 2*(2/5)*(3/4) = 2/5,
    D2 = 2 - 3*(2/5)*(1/3) = 8/5, D3+ = 3 - 4*(2/5)*(1/1) = 7/5."""
    p1 = unigram()
    # "a.": aa 8, ac 2, ad 3 = 13; gamma = (D2 * 1 + D3+ * 2) / 13 = (22/5) / 13 = 22/65
    # "c.": ca 4, cb 1, cc 1 = 6;  gamma = (D1 * 2 + D3+ * 1) / 6 = (11/5) / 6 = 11/30
    return {"a|a": (8 - F(7, 5)) / 13 + F(22, 65) * p1["a"],
            "c|a": (2 - F(8, 5)) / 13 + F(22, 65) * p1["c"],
            "b|a": F(22, 65) * p1["b"],
            "a|c": (4 - F(7, 5)) / 6 + F(11, 30) * p1["a"],
            "e|c": F(11, 30) * p1["e"],
            "a|e": p1["a"]}  # "e" was never seen: all of it backs off


def bigram_continuation():
    """Order 2 inside the order-3 model: continuation counts (see the test above).
    n1 = 5 (ad ba cc da dc), n2 = 2 (ac bb), n3 = 1 (ca), n4 = 1 (aa): Y = 5/9,
    D1 = 1 - 2*(5/9)*(2/5) = 5/9, D2 = 2 - 3*(5/9)*(1/2) = 7/6, D3+ = 3 - 4*(5/9) = 7/9."""
    p1 = unigram()
    # "a.": aa 4, ac 2, ad 1 = 7; gamma = (5/9 + 7/6 + 7/9) / 7 = 5/14
    # "c.": ca 3, cc 1 = 4;       gamma = (5/9 + 7/9) / 4 = 1/3
    # "b.": ba 1, bb 2 = 3;       gamma = (5/9 + 7/6) / 3 = 31/54
    return {"a|a": (4 - F(7, 9)) / 7 + F(5, 14) * p1["a"],
            "c|a": (2 - F(7, 6)) / 7 + F(5, 14) * p1["c"],
            "a|c": (3 - F(7, 9)) / 4 + F(1, 3) * p1["a"],
            "b|b": (2 - F(7, 6)) / 3 + F(31, 54) * p1["b"]}


def trigram_raw():
    """Order-3 model, top level, raw counts. n1 = 11, n2 = 3 (aca adc caa), n3 = 1 (aad),
    n4 = 1 (aaa): Y = 11/17, D1 = 1 - 2*(11/17)*(3/11) = 11/17,
    D2 = 2 - 3*(11/17)*(1/3) = 23/17, D3+ = 3 - 4*(11/17)*(1/1) = 7/17."""
    p2 = bigram_continuation()
    # "aa.": aaa 4, aac 1, aad 3 = 8; gamma = (11/17 + 7/17 * 2) / 8 = 25/136
    # "ca.": caa 2, cac 1 = 3;        gamma = (11/17 + 23/17) / 3 = 2/3
    # "ac.": aca 2 = 2;               gamma = (23/17) / 2 = 23/34
    return {"a|aa": (4 - F(7, 17)) / 8 + F(25, 136) * p2["a|a"],
            "c|aa": (1 - F(11, 17)) / 8 + F(25, 136) * p2["c|a"],
            "a|ca": (2 - F(23, 17)) / 3 + F(2, 3) * p2["a|a"],
            "a|ac": (2 - F(23, 17)) / 2 + F(23, 34) * p2["a|c"],
            "a|ea": p2["a|a"],   # "ea" never seen: the order below, continuation counts
            "b|ab": p2["b|b"]}   # "ab" never seen either


@pytest.mark.parametrize("order,table", [(2, bigram_raw), (3, trigram_raw)])
def test_probabilities_match_the_hand_computation(order, table):
    model = hand_model(order)
    for event, expected in table().items():
        char, context = event.split("|")
        got = model.distribution(ids(context), order)[HAND_VOCAB.index(char)]
        assert got == pytest.approx(float(expected), abs=1e-9), event


def test_the_first_held_out_chars_use_shorter_histories():
    p1, p2, p3 = unigram(), bigram_continuation(), trigram_raw()
    expected = -(math.log(p1["a"]) + math.log(p2["c|a"]) + math.log(p3["a|ac"])) / 3
    assert hand_model(3).nats(ids("aca"))[3] == pytest.approx(expected, abs=1e-9)
    expected2 = -(math.log(p1["a"]) + math.log(bigram_raw()["c|a"])) / 2
    assert hand_model(3).nats(ids("ac"), [2, 3])[2] == pytest.approx(expected2, abs=1e-9)


def test_hand_discounts():
    model = hand_model(3)
    assert model.continuation[0].discounts == pytest.approx([1 / 3, 1, 5 / 3])
    assert model.raw[1].discounts == pytest.approx([2 / 5, 8 / 5, 7 / 5])
    assert model.continuation[1].discounts == pytest.approx([5 / 9, 7 / 6, 7 / 9])
    assert model.raw[2].discounts == pytest.approx([11 / 17, 23 / 17, 7 / 17])


def reference(text, vocab_size, order):
    """A slow, dictionary-based interpolated modified Kneser-Ney, written from the paper."""
    raw = {n: Counter(tuple(text[i:i + n]) for i in range(len(text) - n + 1))
           for n in range(1, order + 1)}
    cont = {n: Counter(g[1:] for g in raw[n + 1]) for n in range(1, order)}

    def discount(counts, c):
        n1, n2, n3, n4 = (sum(1 for v in counts.values() if v == k) for k in (1, 2, 3, 4))
        if 0 in (n1, n2, n3):
            d = [0.5, 1.0, 1.5]
        else:
            y = n1 / (n1 + 2 * n2)
            d = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
        return 0.0 if c == 0 else min(max(d[min(c, 3) - 1], 0.01), min(c, 3))

    def prob(w, history, n):
        if n == 0:
            return 1 / vocab_size
        counts = raw[n] if n == order else cont[n]
        h = tuple(history[len(history) - n + 1:]) if n > 1 else ()
        if n > 1 and len(history) < n - 1:
            return prob(w, history, n - 1)
        row = {g: c for g, c in counts.items() if g[:-1] == h}
        total = sum(row.values())
        if total == 0:
            return prob(w, history, n - 1)
        gamma = sum(discount(counts, c) for c in row.values()) / total
        c = row.get(h + (w,), 0)
        return (c - discount(counts, c)) / total + gamma * prob(w, history, n - 1)

    return prob


@pytest.mark.parametrize("order", [1, 2, 4, 5])
def test_agrees_with_a_dictionary_reference(real, order):
    vocab, text = real
    train, held = [int(i) for i in text[:3000]], text[3000:3030]
    prob = reference(train, len(vocab), order)
    model = KneserNey(np.array(train), len(vocab), order)
    got = model.probabilities(held)[order]
    for i in range(len(held)):
        expected = prob(int(held[i]), [int(c) for c in held[max(0, i - order + 1):i]], order)
        assert got[i] == pytest.approx(expected, abs=1e-12), i


@pytest.fixture(scope="module")
def real():
    text = (ROOT / "data" / "corpora" / "nietzsche.txt").read_text(encoding="utf-8")[:60000]
    vocab = Vocabulary.from_text(text)
    return vocab, vocab.encode_exact(text)


def test_distributions_sum_to_one_for_seen_and_unseen_contexts(real):
    vocab, text = real
    model = KneserNey(text[:50000], len(vocab), 8)
    rng = np.random.default_rng(0)
    for order in range(1, 9):
        for k in range(40):
            if k % 2:  # random ids: mostly never seen
                context = rng.integers(0, len(vocab), size=int(rng.integers(0, 12)))
            else:
                start = int(rng.integers(0, len(text) - 12))
                context = text[start:start + int(rng.integers(0, 12))]
            p = model.distribution(context, order)
            assert (p > 0).all() and p.sum() == pytest.approx(1, abs=1e-9), (order, k)


def test_scoring_agrees_with_the_distributions(real):
    vocab, text = real
    model = KneserNey(text[:50000], len(vocab), 6)
    held = text[50000:50040]
    probs = model.probabilities(held, range(1, 7))
    for order in range(1, 7):
        for i in range(len(held)):
            assert probs[order][i] == pytest.approx(
                model.distribution(held[:i], order)[held[i]], abs=1e-12)
    nats = model.nats(text[50000:], range(1, 7))
    assert nats[5] < nats[2] < nats[1] < math.log(len(vocab))


@pytest.mark.parametrize("vocab_size", [200, 60000])
def test_eight_grams_over_a_large_vocabulary(vocab_size):
    rng = np.random.default_rng(1)
    words = [rng.integers(0, vocab_size, size=int(rng.integers(3, 9))) for _ in range(300)]
    text = np.concatenate([words[i] for i in rng.integers(0, 300, size=20000)])
    model = KneserNey(text[:-5000], vocab_size, 8)
    nats = model.nats(text[-5000:], [1, 4, 8])
    assert all(math.isfinite(v) and v > 0 for v in nats.values())
    assert nats[8] < nats[1] and nats[4] < nats[1]
    for context in (text[-20:], text[-3:], rng.integers(0, vocab_size, 7)):
        assert model.distribution(context).sum() == pytest.approx(1, abs=1e-9)


def test_tiny_data_falls_back_to_fixed_discounts():
    assert list(ngram.discounts(np.array([1, 1, 2]))) == [0, 0.5, 1.0, 1.5]  # no n3
    model = KneserNey(np.array([0, 1, 0, 1]), 3, 2)
    assert model.distribution([0]).sum() == pytest.approx(1)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="order"):
        KneserNey(np.arange(10), 10, 0)
    with pytest.raises(ValueError, match="too few"):
        KneserNey(np.arange(3), 10, 5)
    with pytest.raises(ValueError, match="ids"):
        KneserNey(np.arange(10), 10, 2).nats(np.array([10]))


# --- baseline over a style: the split, the exclusions and the cache ---------------------

BIG = [f"line {i:03d}: the {'cat dog owl fox'.split()[i % 4]} sat.\n" for i in range(200)]
TOML = """\
[styles.big]
command = "big"
corpus = "big.txt"
description = "every line"
default_chars = 10
max_chars = 20
training = {{ seq_len = 16 }}
exclude_heldout_of = ["part"]

[styles.part]
command = "part"
corpus = "part.txt"
description = "some of the lines"
default_chars = 10
max_chars = 20
"""


@pytest.fixture
def book(tmp_path):
    (tmp_path / "big.txt").write_text("".join(BIG), encoding="utf-8")
    (tmp_path / "part.txt").write_text("".join(BIG[100:180]), encoding="utf-8")
    (tmp_path / "config.toml").write_text(TOML.format(), encoding="utf-8")
    return load_styles(tmp_path / "config.toml")


def test_baseline_trains_on_the_training_part_and_scores_the_held_out_part(
        book, tmp_path, monkeypatch):
    seen = {}

    class Spy(KneserNey):
        def __init__(self, train, vocab_size, order):
            seen["train"], seen["order"] = np.array(train), order
            super().__init__(train, vocab_size, order)

        def nats(self, heldout, orders=None):
            seen["val"] = np.array(heldout)
            return super().nats(heldout, orders)

    monkeypatch.setattr(ngram, "KneserNey", Spy)
    nats = baseline(book.get("big"), book, [2, 3], cache=tmp_path / "cache")
    vocab = Vocabulary.from_text("".join(BIG))
    train, val = vocab.decode(seen["train"]), vocab.decode(seen["val"])
    held_by_part = "".join(BIG[172:180])  # the last 10% of part.txt: 8 whole lines
    assert val == "".join(BIG[180:])  # the last 10% of big.txt, as evaluate scores it
    assert train == "".join(BIG[:172]) and held_by_part not in train
    assert seen["order"] == 3 and list(nats) == [2, 3]
    assert nats == pytest.approx(KneserNey(seen["train"], len(vocab), 3).nats(
        seen["val"], [2, 3]))


def test_the_cache_is_written_and_read_back(book, tmp_path, monkeypatch):
    cache, big = tmp_path / "cache", book.get("big")
    assert cached_baseline(big, book, [2, 3], cache=cache) is None
    nats = baseline(big, book, [2, 3], cache=cache)
    assert len(list(cache.glob("ngram-*.json"))) == 1

    def no_model(*args, **kw):
        raise AssertionError("cached_baseline computed a model")

    monkeypatch.setattr(ngram, "KneserNey", no_model)
    assert cached_baseline(big, book, [3, 2], cache=cache) == nats
    assert cached_baseline(big, book, [2, 3, 4], cache=cache) is None  # other orders
    (tmp_path / "big.txt").write_text("".join(BIG[:199]), encoding="utf-8")
    assert cached_baseline(big, book, [2, 3], cache=cache) is None  # another corpus
    (tmp_path / "big.txt").write_text("".join(BIG), encoding="utf-8")
    assert cached_baseline(big, book, [2, 3], cache=cache) == nats
    (tmp_path / "part.txt").write_text("".join(BIG[100:150]), encoding="utf-8")
    assert cached_baseline(big, book, [2, 3], cache=cache) is None  # other exclusions


def test_cli_prints_each_order_and_the_best(run_cli, bot, tmp_path):
    proc = run_cli("training", ["baseline", "tiny", "--orders", "2-4"], config=bot.config,
                   CORPUS_CACHE=str(tmp_path / "cache"), PYTHONPROFILEIMPORTTIME="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    values = {}
    for line in lines[:-1]:
        found = re.fullmatch(r"order (\d+): (\d+\.\d{4}) nats/char", line)
        assert found, line
        values[int(found[1])] = float(found[2])
    assert list(values) == [2, 3, 4]
    best = min(values, key=values.get)
    assert lines[-1] == f"baseline_nats={values[best]:.4f} order={best}"
    assert "tensorflow" not in proc.stderr and "keras" not in proc.stderr  # import times
    book = load_styles(bot.config)
    cached = cached_baseline(book.get("tiny"), book, [2, 3, 4], cache=tmp_path / "cache")
    assert {n: round(v, 4) for n, v in cached.items()} == values


@pytest.mark.parametrize("args,words", [
    (["baseline", "poem"], ["unknown style 'poem'", "tiny"]),
    (["baseline", "tiny", "--orders", "5-3"], ["--orders", "5-3"]),
    (["baseline", "tiny", "--orders", "0-2"], ["--orders"]),
    (["baseline", "tiny", "--orders", "three"], ["--orders"]),
    (["baseline", "empty"], ["empty"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(run_cli, bot, bad_input, tmp_path, args, words):
    bad_input(run_cli("training", args, config=bot.config,
                      CORPUS_CACHE=str(tmp_path / "cache")), *words)


def test_parse_orders():
    assert ngram.parse_orders("3-8") == [3, 4, 5, 6, 7, 8]
    assert ngram.parse_orders("5") == [5]
    assert ngram.parse_orders("6,2,4") == [2, 4, 6]


def test_best_cached_is_the_best_default_order_or_none(book, tmp_path, monkeypatch):
    from training import corpus as corpora

    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    big = book.get("big")
    assert ngram.best_cached(big, book) is None  # nothing cached yet
    nats = baseline(big, book)  # the default orders, as `training baseline` stores them
    best = min(nats, key=nats.get)
    assert ngram.best_cached(big, book) == (nats[best], best)
    (tmp_path / "big.txt").unlink()
    assert ngram.best_cached(big, book) is None  # no corpus to hash: None, no error
