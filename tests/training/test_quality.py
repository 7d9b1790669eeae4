"""``python -m training quality``: real words, verbatim 8-word runs, first-600-chars loss.

The counts are checked against numbers counted by hand on fixed texts.
"""
import json
import math
import random
import re
import sys

import numpy as np
import pytest

from training import quality

SENTENCES = ["the cat sat on the mat.", "a dog ran to the old tree.",
             '"not now," said the boy.', "it's a small red hat.",
             "the sun is hot and the sea is cold.", "we eat bread - and then we rest."]


def test_words_are_letter_runs_of_two_or_more_lowercased():
    text = "The CAT's 2nd hat, a_b x9y Привет, МИР! don't-stop"
    assert quality.words(text) == ["the", "cat", "nd", "hat", "привет", "мир", "don",
                                   "stop"]


def test_real_word_count_by_hand():
    known = set(quality.words("the cat sat on the mat. a dog ran to the old tree.\n"))
    samples = ["The cat zat on a mat, the dogg", "ran 2 the old treee."]
    # the cat [zat] on mat the [dogg] | ran the old [treee]: 11 words ("a", "2" are
    # not words), 3 invented
    assert quality.real_words(samples, known) == (8, 11)
    assert quality.real_words(["", "a 1 2"], known) == (0, 0)


def _lines_corpus(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_lexicon_is_the_training_part_only(tmp_path):
    # nine lines of 24 chars and one of 23: with val_fraction 0.1 the cut falls at 215,
    # the held-out part starts at the next line start (216): the last line
    corpus = _lines_corpus(tmp_path / "c.txt", ["the cat sat on the mat."] * 9
                           + ["zebras graze all day.."])
    assert quality.training_part(corpus, 0.1) == "the cat sat on the mat.\n" * 9
    assert set(quality.words(quality.training_part(corpus, 0.1))) == {
        "the", "cat", "sat", "on", "mat"}


def test_a_variants_lexicon_comes_from_its_parents_corpus(bot):
    _lines_corpus(bot.corpora / "tiny.txt", ["the cat sat on the mat."] * 9
                  + ["heldout words only here"])
    _lines_corpus(bot.corpora / "fox.txt", ["a fox jumped over a fence."] * 10)
    _lines_corpus(bot.corpora / "owl.txt", ["an owl hoots at night."] * 9
                  + ["owls fly over the hill."])
    book = bot.book()
    assert quality.lexicon(book.get("fable_fox"), book) == {"the", "cat", "sat", "on",
                                                            "mat"}
    assert quality.lexicon(book.get("fable_owl"), book) == {"an", "owl", "hoots", "at",
                                                            "night"}


def test_verbatim_8_word_runs_by_hand():
    index = quality.RunIndex(["The cat sat on the\nmat and the dog ran to the old tree.",
                              "one two three four five six seven eight"])
    samples = [
        # 11 words, 4 runs: the first three are in the first text, "...ran fast" is not
        "the CAT sat, on the mat and the dog ran fast",
        # 10 words, 3 runs: each would need the end of the first text joined to the
        # start of the second, and a run never spans two texts: none is found
        "ran to the old tree one two three four five",
        "one two three four five six seven",  # 7 words: no run
        "one two three four five six seven eight",  # 1 run, found
    ]
    assert index.count(samples) == (3 + 0 + 0 + 1, 4 + 3 + 0 + 1)
    assert index.count(["ran to the old tree. one two three"]) == (0, 1)
    assert index.count(["mat and the dog ran to the old"]) == (1, 1)


def test_opening_places_by_hand():
    nl = 0
    ids = np.array([5, nl, nl, 3, 4, nl, nl, nl, 6, 7, 8, 9, nl, nl, 1, 2])
    # after a "\n\n": positions 3, 7 (starts with "\n" again: skipped), 8, 14
    assert quality.opening_places(ids, [nl, nl], length=2).tolist() == [3, 8, 14]
    assert quality.opening_places(ids, [nl, nl], length=3).tolist() == [3, 8]
    # after a "\n": 3, 8, 14 (2, 6, 7 and 13 start with "\n" again)
    assert quality.opening_places(ids, [nl], length=2).tolist() == [3, 8, 14]
    spread = quality.opening_places(np.tile([nl, 1, 2, 3], 100), [nl], count=4, length=3)
    assert spread.tolist() == [1, 133, 265, 397]


def _ce_by_hand(lstm, ids, stop, place, length, start=None):
    state = lstm.zero_state(1)
    if start is not None:
        for a, b in zip(state.x + state.c, start.x + start.c, strict=True):
            a[:] = b[:, :1]
    logits, _ = lstm.run([stop + list(ids[place:place + length - 1])], state)
    logits = logits[0, len(stop) - 1:].astype(np.float64)  # the stop's last char on
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return float((lse - logits[np.arange(length), ids[place:place + length]]).sum())


def _filled_state(lstm, batch, value):
    state = lstm.zero_state(batch)
    for a in state.x + state.c:
        a[:] = value
    return state


def test_opening_loss_matches_a_hand_computation_and_depends_on_the_start_state(
        tiny_artifact):
    from genmodels.kernel import NumpyLSTM

    lstm = NumpyLSTM(tiny_artifact.weights, tiny_artifact.model_config)
    rng = np.random.default_rng(3)
    ids = rng.integers(1, len(tiny_artifact.vocab), 300)
    ids[[40, 150]], ids[[41, 151]] = 0, len(tiny_artifact.vocab) - 1
    stop, places, length = [0, len(tiny_artifact.vocab) - 1], np.array([42, 152]), 30
    zero = quality.opening_loss(lstm, ids, stop, places, lstm.zero_state(2), length)
    warm = quality.opening_loss(lstm, ids, stop, places, _filled_state(lstm, 2, 0.7),
                                length)
    assert math.isfinite(zero) and math.isfinite(warm) and zero > 0 and warm > 0
    assert abs(zero - warm) > 1e-4
    by_hand = sum(_ce_by_hand(lstm, ids, stop, p, length) for p in places) / (2 * length)
    assert zero == pytest.approx(by_hand, rel=1e-5)
    start = _filled_state(lstm, 1, 0.7)
    by_hand = sum(_ce_by_hand(lstm, ids, stop, p, length, start) for p in places)
    assert warm == pytest.approx(by_hand / (2 * length), rel=1e-5)
    assert math.isnan(quality.opening_loss(lstm, ids, stop, places[:0],
                                           lstm.zero_state(0), length))


def _stories(count: int, end: str) -> str:
    rng = random.Random(count)
    return "".join(rng.choice(SENTENCES) + end for _ in range(count))


def _quality_bot(bot):
    """tiny (parent) and fable_fox (variant) with corpora long enough for 600-char
    openings after a newline, and a random artifact each."""
    (bot.corpora / "tiny.txt").write_text(_stories(2000, "\n"), encoding="utf-8")
    # fable_fox's stop is a blank line; "v" and "x" are new to its parent tiny
    (bot.corpora / "fox.txt").write_text(_stories(400, "\n\n") + "foxy vixen\n",
                                         encoding="utf-8")
    bot.save_artifact("tiny", seed=1)
    bot.save_artifact("fable_fox", seed=2)
    return bot


def test_quality_cli_on_a_tiny_variant_end_to_end(run_cli, bot, tmp_path):
    _quality_bot(bot)
    proc = run_cli("training", ["quality", "fable_fox"], config=bot.config, timeout=300,
                   CORPUS_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    last = re.fullmatch(r"quality fable_fox val=(\S+) baseline=(\S+) "
                        r"real_words_0\.7=(\S+) verbatim8=(\S+)", out[-1])
    assert last, out[-1]
    saved = json.loads((bot.root / "var" / "quality" / "fable_fox.json").read_text())
    assert saved["style"] == "fable_fox" and saved["parent"] == "tiny"
    assert float(last[1]) == pytest.approx(saved["val_loss"], abs=1e-4)
    assert float(last[3]) == pytest.approx(saved["real_words"]["0.7"], abs=1e-4)
    assert float(last[4]) == pytest.approx(saved["verbatim8"]["0.7"], abs=1e-4)
    assert set(saved["real_words"]) == set(saved["verbatim8"]) == {"0.5", "0.7", "1"}
    assert all(saved["words"][t] > 0 for t in saved["words"])
    assert all(0 <= r <= 1 for r in saved["real_words"].values())
    for key in ("val_loss", "parent_val_loss", "opening_zero", "opening_start"):
        assert math.isfinite(saved[key]) and saved[key] > 0, (key, saved[key])
    assert saved["opening_places"] > 0 and saved["stop"] == "\n\n"
    assert any(line.startswith("parent tiny ") for line in out)
    # the parent's sentences have 29 words: the cat sat on mat dog ran to old tree not
    # now said boy it small red hat sun is hot and sea cold we eat bread then rest
    assert saved["lexicon"] == "corpora/tiny.txt" and saved["lexicon_words"] == 29
    assert "lexicon: 29 words of corpora/tiny.txt" in out
    assert sum(line.startswith("real words at T=") for line in out) == 3
    assert sum(line.startswith("verbatim 8-word runs at T=") for line in out) == 3


def test_quality_of_a_plain_style_in_process(bot, tmp_path, monkeypatch, capsys):
    from training import corpus as corpora
    from training.__main__ import main

    _quality_bot(bot)
    real_prepare = corpora.prepare
    monkeypatch.setattr(corpora, "prepare", lambda *a, **kw: real_prepare(
        *a, **kw | {"cache": tmp_path / "cache"}))
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("BOT_CONFIG", str(bot.config))
    monkeypatch.setitem(sys.modules, "training.ngram", None)  # an import of it fails
    assert main(["quality", "tiny"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "n-gram baseline: missing (training/ngram.py not available)" in out
    assert out[-1].startswith("quality tiny val=") and " baseline=nan " in out[-1]
    saved = json.loads((bot.root / "var" / "quality" / "tiny.json").read_text())
    assert saved["baseline"] is None and saved["baseline_best"] is None
    assert saved["parent"] == "" and saved["parent_val_loss"] is None
    assert saved["stop"] == "\n" and saved["opening_places"] == quality.PLACES
    # the random model has not seen the stories it scores: far from copying any
    assert saved["verbatim8"]["0.5"] < 0.5


def test_quality_bad_input_is_one_line_and_exit_2(run_cli, bot, bad_input, tmp_path):
    bad_input(run_cli("training", ["quality", "poem"], config=bot.config),
              "unknown style 'poem'")
    bad_input(run_cli("training", ["quality", "tiny", "--model", str(tmp_path / "none")],
                      config=bot.config), str(tmp_path / "none"))


def test_a_parent_without_a_model_is_noted_not_fatal(run_cli, bot, tmp_path):
    bot.save_artifact("fable_fox")  # its parent tiny has no artifact
    proc = run_cli("training", ["quality", "fable_fox"], config=bot.config, timeout=300,
                   CORPUS_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    noted = [line for line in proc.stdout.splitlines() if line.startswith("parent tiny:")]
    assert len(noted) == 1 and str(bot.models / "tiny") in noted[0], proc.stdout
    saved = json.loads((bot.root / "var" / "quality" / "fable_fox.json").read_text())
    assert saved["parent"] == "tiny" and saved["parent_val_loss"] is None


def test_a_style_fine_tuned_from_a_base_keeps_its_own_lexicon(bot):
    _lines_corpus(bot.corpora / "fox.txt", ["a fox jumped over a fence."] * 10)
    book = bot.book()
    book.bases["tiny"] = book.styles.pop("tiny")  # fable_fox's parent is now a base
    fox = book.get("fable_fox")
    assert quality.lexicon_source(fox, book) == fox
    assert quality.lexicon(fox, book) == {"fox", "jumped", "over", "fence"}


def test_a_parent_corpus_not_written_yet_leaves_the_styles_own_lexicon(bot):
    import dataclasses

    _lines_corpus(bot.corpora / "fox.txt", ["a fox jumped over a fence."] * 10)
    book = bot.book()
    book.styles["tiny"] = dataclasses.replace(book.get("tiny"),
                                              corpus=bot.root / "var" / "none.txt")
    fox = book.get("fable_fox")
    assert quality.lexicon_source(fox, book) == fox
    assert quality.lexicon(fox, book) == {"fox", "jumped", "over", "fence"}
