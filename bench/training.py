"""Training for equal wall-clock budgets: the seed recipe against our trainer, in one run.

Both train from scratch on the same corpus (``data/corpora/shakespeare.txt``) and are
scored on the same held-out split: the one ``training.corpus.prepare`` writes for our
trainer (the last 10% of the characters, never trained on). Shakespeare fine-tunes from
the English base in config.toml; here our trainer ignores that parent
(``Run(..., scratch=True)``) so the race stays from-scratch against from-scratch. Ours
uses ``--batch-size`` (default 128, the batch the base models train with, chosen for
trained characters per second) and the peak learning rate of the from-scratch recipe
(the base's; ``--learning-rate`` overrides it; the style's own rate is a fine-tune's).
Reported for each:

* training-step speed of our model by LSTM implementation (Keras' LSTM layer, with and
  without XLA, against ``training.fused_lstm.FusedLSTM`` with XLA, which training uses
  by default), and of FusedLSTM under Keras' ``mixed_bfloat16`` policy with and without
  XLA (``--precision mixed_bfloat16`` races that, the way training runs it: no XLA);
* target characters per second: characters whose prediction was trained on. The seed
  recipe trains one target per 60-char window (batch 128); ours trains every position
  of a 128-char window (steps x batch x seq_len), so this is the fair unit; the ratio
  of ours to the recipe's has a target of ``RATIO_TARGET`` (10x);
* this CPU's matmul peak, measured before and after training in the same run: the
  best TensorFlow float32 GFLOP/s of a 2048 x 2048 by 2048 x 2048 product (2 n^3 FLOP,
  after two warm-up products); ours in FLOP/s as a share of the higher of the two.
  FLOP/s = trained target chars/s x 6 x params (``ModelConfig.n_params()``): the usual
  estimate of 2 FLOP per weight per character forward and 4 backward; it counts the
  embedding table as if it were multiplied, so it errs slightly high;
* held-out loss in nats/char. Ours: every held-out character, state carried through the
  held-out text (``art.metrics['val_loss_nats']``, as published). The seed recipe: each
  held-out position with 60 preceding held-out characters is a target; to keep the run
  short ``--val-cap`` evenly spaced positions are scored (default 20,000; 0 = all).
  For a like-for-like view our model is also scored on exactly those positions from a
  zero state with the same 60 characters of context (``val_nats_per_char_60ctx``).

The budget is the whole wall clock of training, including TensorFlow's tracing and
(for ours) the per-epoch held-out checks. Prints progress, then one final JSON line.

    python bench/training.py [--minutes 5] [--batch-size 128] [--learning-rate LR]
                             [--precision float32|mixed_bfloat16] [--val-cap 20000]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make genmodels/, training/, bench/ importable

from bench import seed_recipe  # noqa: E402
from bench.sampling import machine  # noqa: E402
from genmodels.config import PRECISIONS  # noqa: E402
from genmodels.kernel import NumpyLSTM  # noqa: E402
from genmodels.styles import load_styles  # noqa: E402
from genmodels.vocab import Vocabulary  # noqa: E402
from training import corpus as corpora  # noqa: E402

STYLE = "shakespeare"
CORPUS = ROOT / "data" / "corpora" / "shakespeare.txt"
VAL_FRACTION = 0.1
BATCH_SIZE = 128  # the base models' batch, chosen for trained chars/s
FLOP_PER_PARAM = 6  # per trained char: 2 forward + 4 backward per weight
MATMUL_N = 2048
MATMUL_REPS = 5
RATIO_TARGET = 10.0  # ours / the seed recipe, trained target chars per second


def split(seq_len: int) -> tuple[Vocabulary, corpora.Prepared]:
    """The sorted vocabulary and the train/held-out id files of the corpus."""
    vocab = Vocabulary(corpora.scan(CORPUS)[2])
    return vocab, corpora.prepare(CORPUS, vocab, val_fraction=VAL_FRACTION, seq_len=seq_len)


def scratch_learning_rate(style, book) -> float:
    """The peak rate of the model at the top of ``style``'s fine-tuning chain (a base):
    the from-scratch recipe. A fine-tuned style's own rate is tuned for a fine-tune."""
    seen = {style.name}
    while style.training.parent and style.training.parent not in seen:
        style = book.get(style.training.parent)
        seen.add(style.name)
    return style.training.learning_rate


def race_style(book, batch_size: int, precision: str = "float32"):
    """The style as raced: its own config with ``batch_size`` and ``precision``."""
    style = book.get(STYLE)
    return replace(style, training=replace(style.training, batch_size=batch_size,
                                           precision=precision))


def train_ours(minutes: float, tmp: Path, prepared: corpora.Prepared, batch_size: int,
               learning_rate: float | None = None, precision: str = "float32"):
    """Our trainer (``training.train.Run``) from scratch for ``minutes``; artifact to ``tmp``."""
    from training.train import Run

    book = load_styles()
    style = race_style(book, batch_size, precision)
    run = Run(style, book, minutes=minutes, out_dir=tmp / "model", runs_dir=tmp / "runs",
              scratch=True,
              learning_rate=learning_rate or scratch_learning_rate(style, book))
    if run.parent is not None or run.cfg.batch_size != batch_size:
        raise RuntimeError("our trainer would not train from scratch at this batch size")
    if run.data.val_path != prepared.val_path or run.vocab != Vocabulary(
            corpora.scan(CORPUS)[2]):
        raise RuntimeError("our trainer prepared a different split or vocabulary")
    start = time.monotonic()
    art = run.train()
    return art, time.monotonic() - start


def matmul_gflops(n: int = MATMUL_N, reps: int = MATMUL_REPS, matmul=None) -> float:
    """Best float32 GFLOP/s of an n x n by n x n product (2 n^3 FLOP) over ``reps`` timed
    calls of ``matmul()`` after two warm-up calls; TensorFlow's CPU matmul by default."""
    if matmul is None:
        import tensorflow as tf

        a = tf.random.uniform((n, n), dtype=tf.float32, seed=1)
        b = tf.random.uniform((n, n), dtype=tf.float32, seed=2)

        def matmul():
            return tf.linalg.matmul(a, b).numpy()  # .numpy(): the product is done
    for _ in range(2):  # thread pools, oneDNN's kernel choice
        matmul()
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def flop_figures(chars_per_s: float, params: int, peak_gflops: float) -> dict:
    """Trained target chars/s as FLOP/s (x 6 x params) and as a share of the peak."""
    flops = chars_per_s * FLOP_PER_PARAM * params
    return {"flop_per_target_char": FLOP_PER_PARAM * params,
            "gflop_per_s": round(flops / 1e9, 2),
            "share_of_matmul_peak": round(flops / (peak_gflops * 1e9), 4)}


def ours_on_windows(art, ids: np.ndarray, positions: np.ndarray, chunk: int = 4096) -> float:
    """Our model's nats/char on ``positions``, each read from a zero state after
    exactly the 60 preceding characters: the seed recipe's view of the held-out text."""
    lstm, ids = NumpyLSTM(art.weights, art.model_config), np.asarray(ids, dtype=np.intp)
    total = 0.0
    for b in range(0, len(positions), chunk):
        pos = positions[b:b + chunk]
        state = lstm.zero_state(len(pos))
        for t in range(seed_recipe.MAXLEN, 0, -1):
            logits = lstm.step_columns(ids[pos - t], state)
        logits = logits.astype(np.float64)  # (V, B): predicts ids[pos]
        top = logits.max(axis=0)
        lse = top + np.log(np.exp(logits - top).sum(axis=0))
        total += float((lse - logits[ids[pos], np.arange(len(pos))]).sum())
    return total / len(positions)


def ours_figures(art, wall: float, val_ids, positions) -> dict:
    m, tc = art.metrics, art.train_config
    chars = m["steps"] * tc.batch_size * tc.seq_len
    return {"target_chars": chars, "seconds": m["train_seconds"],
            "target_chars_per_s": round(chars / m["train_seconds"]),
            "steps": m["steps"], "batch_size": tc.batch_size, "seq_len": tc.seq_len,
            "scratch": not art.parent_version, "learning_rate": tc.learning_rate,
            "wall_s_including_publish": round(wall, 1),
            "params": art.model_config.n_params(),
            "val_nats_per_char": m["val_loss_nats"],
            "val_nats_per_char_60ctx": round(ours_on_windows(art, val_ids, positions), 5)}


def seed_figures(prepared: corpora.Prepared, vocab_size: int, seconds: float,
                 positions: np.ndarray) -> dict:
    train_ids = corpora.read_ids(prepared.train_path)
    model, chars, secs = seed_recipe.train(train_ids, vocab_size, seconds)
    start = time.monotonic()
    val = seed_recipe.val_nats(model, corpora.read_ids(prepared.val_path), vocab_size,
                               positions)
    return {"target_chars": chars, "seconds": round(secs, 1),
            "target_chars_per_s": round(chars / secs), "batch_size": seed_recipe.BATCH_SIZE,
            "maxlen": seed_recipe.MAXLEN, "step": seed_recipe.STEP,
            "params": model.count_params(), "jit_compile": bool(model.jit_compile),
            "val_nats_per_char": round(val, 5), "val_seconds": round(time.monotonic() - start, 1)}


def layer_throughput(vocab_size: int, batch: int, steps: int = 8) -> dict:
    """Target chars/s of one training step of our 2x256 model, by LSTM implementation:
    Keras' own LSTM layer (with and without XLA) against training's FusedLSTM, in float32
    with XLA (the default) and with the mixed_bfloat16 policy, with and without XLA."""
    import keras

    from genmodels.config import ModelConfig
    from training.keras_model import build_model

    cfg, seq = ModelConfig(vocab_size=vocab_size), 128
    ids = np.random.default_rng(0).integers(0, vocab_size, (batch, seq + 1)).astype(np.int32)
    out = {}
    for name, fused, jit, policy in (
            ("keras_lstm", False, False, "float32"), ("keras_lstm_xla", False, True, "float32"),
            ("fused_lstm_xla", True, True, "float32"),
            ("fused_lstm_bf16", True, False, "mixed_bfloat16"),
            ("fused_lstm_bf16_xla", True, True, "mixed_bfloat16")):
        model = build_model(cfg, fused=fused, precision=policy)
        model.compile(optimizer="adam", jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(2):  # tracing and compilation are not what we time
            model.train_on_batch(ids[:, :-1], ids[:, 1:])
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(ids[:, :-1], ids[:, 1:])
        out[name] = round(steps * batch * seq / (time.perf_counter() - start))
        print(f"training step, {name}: {out[name]:,} target chars/s", flush=True)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="budget for EACH trainer")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"our trainer's batch (default {BATCH_SIZE}, as the base models)")
    p.add_argument("--learning-rate", type=float,
                   help="our peak learning rate (default: the from-scratch base's)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="our trainer's compute precision (TrainConfig.precision)")
    p.add_argument("--val-cap", type=int, default=20_000,
                   help="held-out positions scored for the 60-char view (0 = all)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.minutes <= 0:
        p.error("--batch-size and --minutes must be positive")
    return args


def race(args, prepared, vocab, val_ids, positions) -> tuple[dict, dict, dict]:
    """Our trainer, then the seed recipe, with the matmul peak before and after."""
    peak = {"n": MATMUL_N, "reps": MATMUL_REPS, "dtype": "float32", "library": "tensorflow",
            "gflops_before": round(matmul_gflops(), 1)}
    print(f"matmul {MATMUL_N}: {peak['gflops_before']:,} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        art, wall = train_ours(args.minutes, Path(tmp), prepared, args.batch_size,
                               args.learning_rate, args.precision)
        ours = ours_figures(art, wall, val_ids, positions)
    peak["gflops_after"] = round(matmul_gflops(), 1)
    peak["peak_gflops"] = max(peak["gflops_before"], peak["gflops_after"])
    ours |= flop_figures(ours["target_chars_per_s"], ours["params"], peak["peak_gflops"])
    print(f"ours: {ours['target_chars_per_s']:,} target chars/s ({ours['gflop_per_s']} "
          f"GFLOP/s, {ours['share_of_matmul_peak']:.1%} of the matmul peak), "
          f"val {ours['val_nats_per_char']:.4f} nats/char", flush=True)
    print("seed recipe: training ...", flush=True)
    seed = seed_figures(prepared, len(vocab), args.minutes * 60, positions)
    print(f"seed recipe: {seed['target_chars_per_s']:,} target chars/s, "
          f"val {seed['val_nats_per_char']:.4f} nats/char (60-char context); ours on the "
          f"same positions {ours['val_nats_per_char_60ctx']:.4f}", flush=True)
    return ours, seed, peak


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    mach = machine()  # before we load the cores ourselves
    vocab, prepared = split(load_styles().get(STYLE).training.seq_len)
    val_ids = corpora.read_ids(prepared.val_path)
    positions = seed_recipe.heldout_positions(len(val_ids), args.val_cap or None)
    print(f"corpus {CORPUS.name}: {prepared.train_chars:,} train / {prepared.val_chars:,} "
          f"held-out chars, vocab {len(vocab)}; {args.minutes:g} min each", flush=True)
    layers = layer_throughput(len(vocab), args.batch_size)
    ours, seed, peak = race(args, prepared, vocab, val_ids, positions)
    ratio = ours["target_chars_per_s"] / seed["target_chars_per_s"]
    result = {
        "bench": "training", "minutes_each": args.minutes, "precision": args.precision, "corpus": str(CORPUS.relative_to(ROOT)),
        "split": {"val_fraction": VAL_FRACTION, "train_chars": prepared.train_chars,
                  "val_chars": prepared.val_chars, "sha256": prepared.sha256},
        "val_positions_60ctx": {"scored": len(positions), "cap": args.val_cap or None,
                                "of": max(0, len(val_ids) - seed_recipe.MAXLEN),
                                "spacing": "evenly spaced"},
        "ours": ours, "seed_recipe": seed, "lstm_layer_target_chars_per_s": layers,
        "matmul_peak": peak, "flop_formula": f"target chars/s x {FLOP_PER_PARAM} x params",
        "ratio_target_chars_per_s": round(ratio, 1), "ratio_target": RATIO_TARGET,
        "ratio_target_met": ratio >= RATIO_TARGET,
        "val_bits_per_char": {"ours": round(ours["val_nats_per_char"] / math.log(2), 4),
                              "seed_recipe": round(seed["val_nats_per_char"] / math.log(2), 4)},
        "machine": mach}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
