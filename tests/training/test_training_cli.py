"""``python -m training``: bad input is one stderr line and exit status 2, never a traceback.

(The evaluate success path runs in-process in test_train.py, so its corpus cache stays
in a temporary folder.)
"""
import pytest


def test_train_on_an_empty_corpus_is_one_line_and_exit_2(run_cli, bot, bad_input):
    proc = run_cli("training", ["train", "empty"], config=bot.config, timeout=180)
    bad_input(proc, str(bot.corpora / "empty.txt"), "empty")


def test_evaluate_unknown_style_lists_the_styles(run_cli, bot, bad_input):
    bad_input(run_cli("training", ["evaluate", "poem"], config=bot.config),
              "unknown style 'poem'", "tiny, fable_fox")


def test_evaluate_without_an_artifact_is_one_line_and_exit_2(run_cli, bot, bad_input):
    bad_input(run_cli("training", ["evaluate", "tiny"], config=bot.config),
              str(bot.models / "tiny"))


@pytest.mark.parametrize("damage", ["model.json", "weights.npz"])
def test_evaluate_a_corrupt_artifact_names_the_file(run_cli, bot, bad_input, damage):
    bot.save_artifact("tiny")
    (bot.models / "tiny" / damage).write_text("garbage", encoding="utf-8")
    bad_input(run_cli("training", ["evaluate", "tiny"], config=bot.config),
              str(bot.models / "tiny" / damage))


@pytest.fixture
def other_corpus_artifact(bot, artifact_factory, tmp_path, monkeypatch):
    """models/tiny holds an artifact over "the cat\n", which lacks most corpus characters;
    ``training.__main__.main`` runs in-process with the corpus cache in tmp_path."""
    from training import corpus as corpora

    real_prepare = corpora.prepare
    monkeypatch.setattr(corpora, "prepare", lambda *a, **kw: real_prepare(
        *a, **kw | {"cache": tmp_path / "cache"}))
    monkeypatch.setenv("BOT_CONFIG", str(bot.config))
    artifact_factory(text="the cat\n", style="tiny").save(bot.models / "tiny")


def test_evaluate_an_artifact_from_another_corpus_is_one_line(
        bot, other_corpus_artifact, capsys):
    from training.__main__ import main

    assert main(["evaluate", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not in the vocabulary" in err[0], err
    assert str(bot.corpora / "tiny.txt") in err[0] and "--widen-vocab" in err[0]


def test_evaluate_with_widen_vocab_scores_characters_the_model_never_saw(
        other_corpus_artifact, capsys):
    import math
    import re

    from training.__main__ import main

    assert main(["evaluate", "tiny", "--widen-vocab"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(r"val_loss_nats=(\S+) bits_per_char=(\S+)", last)
    assert found and math.isfinite(float(found[1])) and float(found[1]) > 0, last


def test_bad_config_is_one_line_and_exit_2(run_cli, bot, bad_input):
    bot.config.write_text(bot.config.read_text().replace("max_chars = 100", "max_chars = 0"))
    bad_input(run_cli("training", ["evaluate", "tiny"], config=bot.config),
              "styles.tiny.default_chars:")


def test_usage_errors_are_one_line_and_exit_2(run_cli, bot, bad_input):
    bad_input(run_cli("training", ["fly"], config=bot.config), "invalid choice")
    bad_input(run_cli("training", ["train", "tiny", "--minutes", "soon"], config=bot.config),
              "--minutes")
