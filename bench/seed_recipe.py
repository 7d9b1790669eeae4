"""The seed recipe, re-implemented faithfully so the benchmarks can race against it.

This is the character LSTM of the Keras ``lstm_text_generation`` example and of
*Deep Learning with Python*, chapter 8 (the settings below are the book's):

* windows of ``MAXLEN`` = 60 characters taken every ``STEP`` = 3 characters; the one
  character after a window is its only target (many-to-one);
* one-hot ``bool`` input of shape (n, 60, V) and one-hot targets (n, V);
* ``Sequential([Input((60, V)), LSTM(128), Dense(V, softmax)])``, RMSprop(lr=0.01),
  categorical cross-entropy, batch size 128, a fresh shuffle every epoch;
* sampling re-runs ``model.predict`` on the one-hot 60-character window for *every*
  generated character and draws with the example's temperature re-weighting.

Where this differs from the originals, it is so that both trainers face the same task:

* no ``text.lower()``: both originals lower-case the corpus, which would make the
  seed recipe predict fewer, easier characters than our models do;
* the vocabulary is our sorted one (``genmodels.vocab.Vocabulary``), so both models
  read the same held-out ids. The two originals also sort ``set(text)``; many copies
  of the recipe use ``list(set(text))`` unsorted, whose order changes from process to
  process, so a reloaded model writes gibberish: the bug ``genmodels/vocab.py`` fixes;
* the one-hot tensors are built one batch at a time from the id array instead of all
  at once (the original needs n x 60 x V bytes: ~1.3 GB for a 4 MB corpus); the
  maths is unchanged and the per-batch cost is small next to a training step.

Importable (``bench/training.py`` and ``bench/sampling.py`` use it); TensorFlow/Keras
are imported lazily so that importing this module stays cheap.
"""
from __future__ import annotations

import time

import numpy as np

MAXLEN = 60
STEP = 3
UNITS = 128
LEARNING_RATE = 0.01
BATCH_SIZE = 128
PROB_FLOOR = 1e-7  # Keras clips softmax outputs to [1e-7, 1 - 1e-7] in its loss


def build_model(vocab_size: int):
    """The recipe's model, compiled as the recipe compiles it (Keras' own defaults)."""
    import keras

    model = keras.Sequential([
        keras.Input((MAXLEN, vocab_size)),
        keras.layers.LSTM(UNITS),
        keras.layers.Dense(vocab_size, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.RMSprop(learning_rate=LEARNING_RATE))
    return model


def window_starts(n_ids: int) -> np.ndarray:
    """Start of every training window: ``range(0, len(text) - maxlen, step)``."""
    return np.arange(0, n_ids - MAXLEN, STEP)


def one_hot_windows(ids: np.ndarray, starts: np.ndarray, vocab_size: int) -> np.ndarray:
    """(len(starts), 60, V) bool: the 60 ids from each start, one-hot."""
    pos = starts[:, None] + np.arange(MAXLEN)
    x = np.zeros((len(starts), MAXLEN, vocab_size), dtype=bool)
    x[np.arange(len(starts))[:, None], np.arange(MAXLEN), ids[pos]] = True
    return x


def one_hot_targets(ids: np.ndarray, starts: np.ndarray, vocab_size: int) -> np.ndarray:
    """(len(starts), V) bool: the character right after each window."""
    y = np.zeros((len(starts), vocab_size), dtype=bool)
    y[np.arange(len(starts)), ids[starts + MAXLEN]] = True
    return y


def _batches(starts: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Window starts batch by batch, reshuffled every epoch, forever.

    The last partial batch of an epoch is skipped: a new batch shape would make
    TensorFlow trace the train step again, which costs more than the 127 windows.
    """
    while True:
        order = rng.permutation(starts)
        for b in range(len(order) // batch_size):
            yield order[b * batch_size:(b + 1) * batch_size]


def train(ids, vocab_size: int, seconds: float, seed: int = 1234,
          batch_size: int = BATCH_SIZE, log=print, log_every: float = 30.0):
    """Train the recipe's model on ``ids`` for ``seconds`` of wall clock.

    Returns ``(model, target_chars_trained, seconds_spent)``; each window contributes
    one target character. The clock includes the first step's tracing, as ours does.
    """
    import keras

    keras.utils.set_random_seed(seed)
    ids = np.asarray(ids, dtype=np.intp)  # ids are small; only the one-hot is bounded
    model = build_model(vocab_size)
    rng = np.random.default_rng(seed)
    start = last_log = time.monotonic()
    n_batches = 0
    for starts in _batches(window_starts(len(ids)), batch_size, rng):
        loss = model.train_on_batch(one_hot_windows(ids, starts, vocab_size),
                                    one_hot_targets(ids, starts, vocab_size))
        n_batches += 1
        now = time.monotonic()
        if now - last_log >= log_every:
            log(f"  seed recipe: {now - start:6.0f} s  {n_batches} batches  "
                f"train loss {float(np.ravel(loss)[0]):.4f}")
            last_log = now
        if now - start >= seconds:
            break
    return model, n_batches * batch_size, time.monotonic() - start


def heldout_positions(n_ids: int, cap: int | None = 20_000) -> np.ndarray:
    """Held-out targets with 60 preceding held-out chars; ``cap`` evenly spaced ones."""
    every = np.arange(MAXLEN, n_ids)
    if cap is None or cap >= len(every):
        return every
    return np.unique(np.linspace(MAXLEN, n_ids - 1, cap).round().astype(np.intp))


def val_nats(model, ids, vocab_size: int, positions: np.ndarray,
             batch_size: int = 1024) -> float:
    """Mean -log p(target) in nats over ``positions`` of ``ids`` (60-char context)."""
    ids = np.asarray(ids, dtype=np.intp)
    total = 0.0
    for b in range(0, len(positions), batch_size):
        starts = positions[b:b + batch_size] - MAXLEN
        probs = np.asarray(model.predict_on_batch(one_hot_windows(ids, starts, vocab_size)))
        p = probs[np.arange(len(starts)), ids[starts + MAXLEN]].astype(np.float64)
        total -= float(np.log(np.clip(p, PROB_FLOOR, 1.0)).sum())
    return total / len(positions)


def reweight(preds: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The example's ``sample()``: re-weight softmax output by temperature, draw once."""
    preds = np.asarray(preds).astype("float64")
    with np.errstate(divide="ignore"):  # a probability of exactly 0 stays impossible
        preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = rng.multinomial(1, preds, 1)
    return int(np.argmax(probas))


def generate(model, chars: list[str], prime_ids, n_chars: int, temperature: float = 0.8,
             seed: int = 1) -> tuple[str, float]:
    """Write ``n_chars`` after a 60-id prime; returns (text, seconds) for the loop.

    Like the originals, every character re-encodes the whole window and calls
    ``model.predict`` on it: no state is carried between characters.
    """
    rng = np.random.default_rng(seed)
    window = [int(i) for i in prime_ids][-MAXLEN:]
    if len(window) != MAXLEN:
        raise ValueError(f"the seed recipe needs a {MAXLEN}-character prime")
    out: list[str] = []
    start = time.perf_counter()
    for _ in range(n_chars):
        sampled = np.zeros((1, MAXLEN, len(chars)))
        for t, i in enumerate(window):
            sampled[0, t, i] = 1.0
        preds = model.predict(sampled, verbose=0)[0]
        nxt = reweight(preds, temperature, rng)
        out.append(chars[nxt])
        window = window[1:] + [nxt]
    return "".join(out), time.perf_counter() - start
