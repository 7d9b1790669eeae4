"""Training end to end on a tiny corpus: loss falls, artifacts publish, resume, fine-tune.

One short run (12 s of budget) is shared by the tests of this module; resume and
fine-tuning continue from it. Everything is written under a temporary folder: the
corpus cache via a patched ``training.corpus.prepare``, checkpoints via ``runs_dir``.
"""
import math
import re
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

pytest.importorskip("tensorflow")
from genmodels.artifact import load  # noqa: E402
from genmodels.config import TrainConfig  # noqa: E402
from training import corpus as corpora  # noqa: E402
from training.ngram import KneserNey  # noqa: E402
from training.train import Run, RunState, lr_at  # noqa: E402

MINUTES = 0.25  # includes the XLA compile of the first step (~5 s on a busy 2-core CPU)
pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")
STEPS = 10  # steps_per_epoch in the tiny config; the last epoch may be cut short


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_bot):
    """The tiny bot (float16 artifacts) with its corpus cache redirected into tmp."""
    root = tmp_path_factory.mktemp("train")
    bot = make_bot(root / "bot", lambda toml: toml.replace('weights_dtype = "float32"',
                                                           'weights_dtype = "float16"'))
    real_prepare = corpora.prepare

    def prepare(*args, **kwargs):
        kwargs.setdefault("cache", root / "cache")
        return real_prepare(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora, "prepare", prepare)
        yield bot, bot.book(), root / "runs"


@pytest.fixture(scope="module")
def trained(setup):
    bot, book, runs = setup
    art = Run(book.get("tiny"), book, minutes=MINUTES, runs_dir=runs).train()
    return art, RunState.load(runs / "tiny" / "state.json")


def test_tiny_corpus_trains_and_val_loss_falls(setup, trained):
    bot, book, runs = setup
    art, state = trained
    history = art.metrics["history"]
    assert len(history) >= 3
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert all(b["minutes"] > a["minutes"] for a, b in pairwise(history))
    val = [h["val_loss"] for h in history]
    uniform = math.log(len(art.vocab))
    assert val[0] < uniform + 0.5
    assert min(val) < val[0] - 0.3  # it learned something after the first epoch
    # Context learned: below a model of the character frequencies alone (unigram
    # Kneser-Ney on the same split). A fixed fraction of log(V) failed under a full
    # suite's load, when the 15-second budget buys fewer steps.
    data = corpora.prepare(book.get("tiny").corpus, art.vocab, art.train_config.val_fraction,
                           art.train_config.seq_len)
    unigram = KneserNey(corpora.read_ids(data.train_path), len(art.vocab), 1).nats(
        corpora.read_ids(data.val_path))[1]
    assert art.metrics["val_loss_nats"] < unigram - 0.3
    assert art.metrics["val_bits_per_char"] == pytest.approx(
        art.metrics["val_loss_nats"] / math.log(2), abs=1e-4)
    # The wall-clock budget is honoured (it is checked after every step).
    assert MINUTES * 60 <= art.metrics["train_seconds"] < MINUTES * 60 + 10
    assert art.metrics["epochs"] == state.epoch == len(history)
    assert art.metrics["steps"] == state.steps
    assert (len(history) - 1) * STEPS < state.steps <= len(history) * STEPS


def test_training_publishes_a_self_describing_artifact(setup, trained):
    bot, book, runs = setup
    art, _ = trained
    folder = bot.models / "tiny"
    assert {p.name for p in folder.iterdir()} == {"model.json", "weights.npz", "loss.png"}
    loaded = load(folder)
    assert loaded.version == art.version and loaded.parent_version is None
    assert loaded.vocab.chars == sorted(set(bot.corpora.joinpath("tiny.txt").read_text()))
    assert loaded.model_config.hidden == 16 and loaded.model_config.n_layers == 1
    assert loaded.train_config.seq_len == 16
    assert loaded.train_config.minutes == MINUTES
    sha, total, _ = corpora.scan(bot.corpora / "tiny.txt")
    assert (loaded.corpus["sha256"], loaded.corpus["chars"]) == (sha, total)
    with np.load(folder / "weights.npz") as npz:
        assert {npz[k].dtype for k in npz.files} == {np.dtype(np.float16)}
    assert {p.name for p in (runs / "tiny").iterdir()} >= {"checkpoint.keras", "state.json",
                                                           "best.npz"}


def test_evaluate_reports_the_published_val_loss(setup, trained, monkeypatch, capsys):
    from training.__main__ import main

    bot, book, runs = setup
    art, _ = trained
    monkeypatch.setenv("BOT_CONFIG", str(bot.config))
    assert main(["evaluate", "tiny"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"val_loss_nats=(\d+\.\d+) bits_per_char=(\d+\.\d+)", last)
    assert match, last
    # Scored on the float16-rounded weights, exactly as published.
    assert float(match[1]) == pytest.approx(art.metrics["val_loss_nats"], abs=1e-4)
    assert float(match[2]) == pytest.approx(art.metrics["val_bits_per_char"], abs=1e-4)


def test_resume_continues_from_the_checkpoint(setup, trained):
    bot, book, runs = setup
    art, before = trained
    n = before.epoch
    out = runs.parent / "resumed"
    resumed = Run(book.get("tiny"), book, minutes=0.15, resume=True, runs_dir=runs,
                  out_dir=out).train()
    after = RunState.load(runs / "tiny" / "state.json")
    history = resumed.metrics["history"]
    assert after.epoch > n and resumed.metrics["epochs"] == after.epoch
    assert history[:n] == before.history  # the old history is kept...
    assert [h["epoch"] for h in history] == list(range(1, after.epoch + 1))  # ...and grows
    assert before.steps < after.steps <= before.steps + STEPS * (after.epoch - n)
    assert after.seconds >= before.seconds + 0.15 * 60
    # It continued from the trained weights and optimiser schedule, not from scratch.
    assert history[n]["val_loss"] < history[0]["val_loss"]
    assert history[n]["lr"] < 0.5 * book.get("tiny").training.learning_rate
    assert load(out).metrics["epochs"] == after.epoch


def test_resume_without_a_checkpoint_names_the_missing_file(setup, tmp_path):
    bot, book, runs = setup
    run = Run(book.get("fable_owl"), book, resume=True, runs_dir=tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="checkpoint.keras"):
        run.train()


def test_a_variant_fine_tunes_from_its_parent(setup, trained):
    bot, book, runs = setup
    parent, _ = trained
    child = Run(book.get("fable_fox"), book, runs_dir=runs).train()
    assert child.parent_version == load(bot.models / "tiny").version
    assert child.vocab == parent.vocab
    assert child.model_config == parent.model_config
    # The fox corpus is the same kind of text: the parent's weights start it far along.
    first = child.metrics["history"][0]["val_loss"]
    assert first < parent.metrics["history"][0]["val_loss"]
    assert load(bot.models / "fable_fox").parent_version == child.parent_version


def test_a_fine_tune_keeps_its_parents_shape_and_takes_its_own_dropout(setup, trained):
    _, book, runs = setup
    parent, _ = trained
    fox = book.get("fable_fox")
    asked = replace(fox, model=fox.model | {"dropout": 0.3, "hidden": 99})
    cfg = Run(asked, book, runs_dir=runs).model_cfg
    assert cfg == replace(parent.model_config, dropout=0.3)  # hidden stays the parent's


def test_a_variant_whose_corpus_has_new_characters_widens_its_parent(setup, trained,
                                                                     capsys):
    bot, book, runs = setup
    parent, _ = trained
    fox = bot.corpora / "fox.txt"
    original = fox.read_text(encoding="utf-8")
    fox.write_text("a fox\u2014five of them\u2014jumps.\n" + original, encoding="utf-8")
    try:
        child = Run(book.get("fable_fox"), book, runs_dir=runs,
                    out_dir=runs / "wide_fox").train()
    finally:
        fox.write_text(original, encoding="utf-8")
    assert "6 corpus character(s) 'fjpvx\u2014' are new to" in capsys.readouterr().out
    assert child.vocab.chars == sorted(set(parent.vocab.chars) | set("fjpvx\u2014"))
    assert child.model_config.vocab_size == len(child.vocab)
    assert child.parent_version == parent.version
    # The parent, widened, was scored on the fox text first: a finite loss.
    assert math.isfinite(child.metrics["history"][0]["val_loss"])


def test_learning_rate_warms_up_then_follows_a_cosine_over_time():
    cfg = TrainConfig(learning_rate=0.01, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.001)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(0.01)
    assert lr_at(cfg, 500, 0.5) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert lr_at(cfg, 500, 1.0) == pytest.approx(0.001)
    assert lr_at(cfg, 500, 3.0) == pytest.approx(0.001)  # past the budget: the floor


def test_a_fine_tune_in_mixed_bfloat16_learns_and_publishes_float32_weights(setup, trained):
    bot, book, runs = setup
    parent, _ = trained
    fox = book.get("fable_fox")
    mixed = replace(fox, training=replace(fox.training, precision="mixed_bfloat16"))
    child = Run(mixed, book, runs_dir=runs, out_dir=runs / "bf16_fox").train()
    assert child.train_config.precision == "mixed_bfloat16"
    with np.load(runs / "fable_fox" / "best.npz") as best:  # the weights as trained
        assert {best[k].dtype for k in best.files} == {np.dtype(np.float32)}
    val = [h["val_loss"] for h in child.metrics["history"]]
    assert min(val) < parent.metrics["history"][0]["val_loss"]
    assert math.isfinite(child.metrics["val_loss_nats"])
