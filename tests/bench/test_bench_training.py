"""bench/training.py without running the race: the from-scratch set-up of our trainer,
its batch size and learning rate, and the matmul-peak and FLOP arithmetic.

No timing is asserted: the clock is a fake wherever a figure is checked.
"""
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from bench import training as bench
from genmodels.styles import load_styles
from genmodels.vocab import Vocabulary
from training import corpus as corpora

CHAIN = """
[bases.english]
styles = ["tiny"]
training = { learning_rate = 0.004 }
"""


def chained(toml: str) -> str:
    """english (base) -> tiny -> fable_fox, each fine-tune with its own rate."""
    toml = toml.replace("[styles.tiny]\n", CHAIN + "\n[styles.tiny]\n")
    return toml.replace('temperature = 0.7\n\n[styles.fable_fox]',
                        'temperature = 0.7\ntraining = { parent = "english", '
                        'learning_rate = 0.002 }\n\n[styles.fable_fox]')


def test_defaults_and_bad_flags():
    args = bench.parse_args([])
    assert (args.minutes, args.batch_size, args.learning_rate) == (5.0, 128, None)
    assert bench.parse_args(["--batch-size", "32", "--minutes", "0.2"]).batch_size == 32
    for bad in (["--batch-size", "0"], ["--minutes", "0"], ["--batch-size", "x"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_the_scratch_rate_is_the_one_at_the_top_of_the_chain(tmp_path, make_bot):
    book = make_bot(tmp_path / "bot", chained).book()
    assert bench.scratch_learning_rate(book.get("fable_fox"), book) == 0.004
    assert bench.scratch_learning_rate(book.get("tiny"), book) == 0.004
    owl = book.get("fable_owl")  # no parent: its own rate
    assert bench.scratch_learning_rate(owl, book) == owl.training.learning_rate


def test_the_raced_style_changes_only_the_batch():
    book = load_styles()
    raced = bench.race_style(book, 96)
    shipped = book.get(bench.STYLE)
    assert raced.training == replace(shipped.training, batch_size=96)
    assert replace(raced, training=shipped.training) == shipped
    assert raced.training.parent  # Run(scratch=True) drops it, not the config
    assert raced.training.val_fraction == bench.VAL_FRACTION and raced.corpus == bench.CORPUS


class FakeRun:
    """Records what bench.train_ours asks of ``training.train.Run``."""

    seen: dict = {}
    parent = None

    def __init__(self, style, book, **kw):
        FakeRun.seen = {"style": style, **kw}
        self.cfg = style.training
        self.data = types.SimpleNamespace(val_path=FakeRun.val_path)
        self.vocab = Vocabulary(corpora.scan(bench.CORPUS)[2])

    def train(self):
        return "artifact"


def test_our_trainer_races_from_scratch_at_the_batch_size(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "training.train", types.SimpleNamespace(Run=FakeRun))
    FakeRun.val_path = tmp_path / "val.u16"
    prepared = types.SimpleNamespace(val_path=FakeRun.val_path)
    art, _ = bench.train_ours(0.2, tmp_path, prepared, 128)
    seen = FakeRun.seen
    assert art == "artifact" and seen["scratch"] is True and seen["minutes"] == 0.2
    assert seen["style"].training.batch_size == 128
    book = load_styles()
    assert seen["learning_rate"] == bench.scratch_learning_rate(book.get(bench.STYLE), book)
    bench.train_ours(0.2, tmp_path, prepared, 64, learning_rate=0.01)
    assert FakeRun.seen["learning_rate"] == 0.01
    assert FakeRun.seen["style"].training.batch_size == 64
    monkeypatch.setattr(FakeRun, "parent", "a parent artifact")  # not from scratch: refused
    with pytest.raises(RuntimeError, match="from scratch"):
        bench.train_ours(0.2, tmp_path, prepared, 128)


def test_matmul_gflops_takes_the_best_timed_call_after_two_warm_ups(monkeypatch):
    calls = []
    ticks = iter([0.0, 2.0, 10.0, 10.5, 20.0, 24.0])  # timed calls: 2 s, 0.5 s, 4 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    gflops = bench.matmul_gflops(n=1000, reps=3, matmul=lambda: calls.append(1))
    assert len(calls) == 2 + 3
    assert gflops == pytest.approx(2 * 1000 ** 3 / 0.5 / 1e9)  # 4 GFLOP/s


def test_tensorflow_matmul_runs():
    pytest.importorskip("tensorflow")
    assert bench.matmul_gflops(n=64, reps=1) > 0


def test_flop_figures():
    out = bench.flop_figures(10_000, 1_000_000, peak_gflops=100.0)
    # 10,000 chars/s x 6 x 1e6 params = 6e10 FLOP/s = 60 GFLOP/s, 60% of 100
    assert out == {"flop_per_target_char": 6_000_000, "gflop_per_s": 60.0,
                   "share_of_matmul_peak": 0.6}
    assert np.isclose(bench.flop_figures(1, 1, 1e-9)["share_of_matmul_peak"], 6)
