"""The sampling rules, in one place, and the single-stream ``Sampler``.

Every writer of text (``Sampler.generate`` here, the batching engine's ``serving.batch``,
the warm-up and quality checks of ``training``) takes these from this module:

* ``SamplingParams`` and their bounds (``MIN_TEMPERATURE``, ``MAX_TEMPERATURE``);
* ``choose``: the next id for each row of a (B, V) logits matrix under its own
  temperature, top-k and top-p (``RowParams``); the single-stream sampler is B = 1;
* the noise: one PCG64 stream per request, drawn in blocks of ``NOISE_BLOCK`` rows
  (``gumbel_block``; ``NoiseBank`` keeps one stream per batch slot), so character i of
  a request uses the same noise row alone or among 255 others;
* ``start_context``: what is fed before the prime; ``stop_reached``: the stop rule.

The LSTM state is carried from character to character (the prime is fed once), so a
character costs one kernel step instead of a ``model.predict`` over a whole window.

Determinism: a seed fixes a PCG64 stream (platform-independent) that supplies one row
of Gumbel noise per character. Same seed + params + model = same text on any machine
(a different BLAS, or NumPy's float32 ``log`` on another instruction set, could in
principle flip a choice between two ids whose noisy scores are within ~1e-6 of each
other).

Start context: from the artifact's warmed start state (the state after reading real
text, see ``NumpyLSTM.start_state``), the style's stop sequence (a newline for
one-story-per-line corpora, a blank line for prose) is fed before the prime, so an empty
prime starts a fresh story/paragraph, and a user's prime is read as the start of one.

    python -m pytest tests/genmodels/test_sampler.py tests/serving/test_engine.py -q
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from genmodels import blas_threads
from genmodels.artifact import Artifact
from genmodels.kernel import NumpyLSTM
from genmodels.vocab import Encoded, Vocabulary

STOP_RULES = {"end_of_line": "\n", "blank_line": "\n\n", "none": ""}
MAX_TEMPERATURE = 5.0
# A positive temperature below this samples like greedy decoding anyway, and a tiny one
# (1e-300) makes the float32 scale 1/T infinite: ask for 0 (greedy) instead.
MIN_TEMPERATURE = 0.05
NOISE_BLOCK = 256  # Gumbel noise rows drawn at once, per stream
F32 = np.float32


def gumbel_block(rng: np.random.Generator, vocab_size: int) -> np.ndarray:
    """One block of Gumbel(0, 1) noise, (NOISE_BLOCK, vocab_size) float32.

    -log(-log(u)) from float32 uniforms with float32 logs, which NumPy vectorises,
    instead of ``rng.gumbel`` (a float64 loop of two scalar logs per value), which at 64
    streams was a large part of each batch step. u = 0 (probability 2**-24 per value)
    gives -inf: that id is not chosen at that step.
    """
    g = rng.random((NOISE_BLOCK, vocab_size), dtype=np.float32)
    with np.errstate(divide="ignore"):
        np.log(g, out=g)
    np.negative(g, out=g)
    np.log(g, out=g)
    np.negative(g, out=g)
    return g


class BadParam(ValueError):
    """A sampling parameter out of bounds: ``field`` names it as ``SamplingParams`` does
    (``top_k``), the message says what is allowed, for a user to read."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; ``validate`` gives a one-line reason for any bad value."""

    temperature: float = 0.8  # 0 means argmax (greedy)
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # nucleus sampling; 1 = no limit
    seed: int | None = None  # None = a fresh random seed (reported back)
    max_chars: int = 400
    stop: str = "blank_line"  # a key of STOP_RULES

    def validate(self, max_chars_allowed: int | None = None,
                 vocab_size: int | None = None) -> None:
        """Raise ``BadParam`` for the first bad value. ``max_chars_allowed`` is the
        style's maximum and ``vocab_size`` the model's (top-k above it means nothing);
        without them only the absolute bounds are checked."""
        t = self.temperature
        if not (t == 0.0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise BadParam("temperature", f"temperature must be 0 (greedy) or between "
                           f"{MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, got {t:.3g}")
        top_k_max = 2**63 - 1 if vocab_size is None else vocab_size  # int64 per row
        if not 0 <= self.top_k <= top_k_max:
            size = "" if vocab_size is None else " (the model's vocabulary size)"
            raise BadParam("top_k", f"top-k must be 0 (off) or between 1 and {top_k_max}"
                           f"{size}, got {_short(self.top_k)}")
        if not 0.0 < self.top_p <= 1.0:
            raise BadParam("top_p", f"top-p must be in (0, 1], got {self.top_p:g}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise BadParam("seed", "seed must be a non-negative integer below 2**63")
        if self.max_chars < 1:
            raise BadParam("max_chars",
                           f"max-chars must be at least 1, got {_short(self.max_chars)}")
        if max_chars_allowed is not None and self.max_chars > max_chars_allowed:
            raise BadParam("max_chars", f"max-chars {_short(self.max_chars)} is above this "
                           f"style's maximum of {max_chars_allowed}")
        if self.stop not in STOP_RULES:
            raise BadParam("stop", f"unknown stop rule {self.stop!r}; choose one of "
                           f"{', '.join(STOP_RULES)}")


def _short(number) -> str:
    """A number for an error message: a 4,000-digit one is cut to its first digits."""
    text = str(number)
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"


@dataclass(frozen=True)
class Sample:
    """What the sampler wrote, and how."""

    prime: str  # the prime as the model read it (after the unseen-character policy)
    text: str  # the continuation, without the stop sequence
    stop_reason: str  # "stop" (the style's stop rule fired) or "max_chars"
    seed: int
    dropped: str  # prime characters the vocabulary could not represent
    version: str  # model version that wrote it

    @property
    def full_text(self) -> str:
        return (self.prime + self.text).strip()


def start_text(stop: str) -> str:
    """The text fed before the prime under stop rule ``stop``: the stop sequence, or a
    newline for a style that stops only at its length, so a sample starts as a fresh
    story or paragraph and a prime is read as the start of one."""
    return STOP_RULES[stop] or "\n"


def start_context(vocab: Vocabulary, stop: str, prime: str) -> tuple[list[int], Encoded]:
    """(ids fed before sampling: ``start_text`` + the prime, the prime as encoded)."""
    encoded = vocab.encode(prime)
    # [0]: a vocabulary without the start text's characters still needs a first id.
    return vocab.encode(start_text(stop)).ids + encoded.ids or [0], encoded


def stop_reached(out: list[str], stop: str) -> bool:
    """True when the characters written so far end with the stop sequence ``stop`` (a
    value of ``STOP_RULES``) and have some real text before it: a sample that starts
    with blank lines goes on."""
    n = len(stop)
    if not n or len(out) < n or out[-1] != stop[-1] or "".join(out[-n:]) != stop:
        return False
    return any(not ch.isspace() for ch in out[:-n])


class RowParams:
    """Per-row sampling parameters as arrays (B,): what ``choose`` reads."""

    def __init__(self, temperature, top_k, top_p):
        self.temperature = np.asarray(temperature, np.float64)
        self.top_k = np.asarray(top_k, np.int64)
        self.top_p = np.asarray(top_p, np.float64)
        greedy = self.temperature == 0.0
        self.scale = np.where(greedy, 1.0, 1.0 / np.where(greedy, 1.0, self.temperature)
                              ).astype(F32)
        self.greedy = greedy
        # Flags that let the common case (temperature only) skip whole passes.
        self.any_greedy, self.all_greedy = bool(greedy.any()), bool(greedy.all())
        self.any_top_k = bool((self.top_k > 0).any())
        self.any_top_p = bool((self.top_p < 1.0).any())

    @classmethod
    def of(cls, params: list[SamplingParams]) -> RowParams:
        return cls([p.temperature for p in params], [p.top_k for p in params],
                   [p.top_p for p in params])

    def take(self, rows: np.ndarray) -> RowParams:
        return RowParams(self.temperature[rows], self.top_k[rows], self.top_p[rows])


def _top_k(z: np.ndarray, k: np.ndarray) -> None:
    """Remove, per row, every value below the row's k-th largest (in place)."""
    size = z.shape[1]
    rows = np.flatnonzero((k > 0) & (k < size))
    if rows.size == 0:
        return
    sub = z[rows]
    # np.partition(z, size - k)[size - k] is the (size - k)-th smallest: a full sort
    # gives the same value, and lets each row use its own k.
    kth = np.sort(sub, axis=1)[np.arange(rows.size), size - k[rows]]
    sub[sub < kth[:, None]] = -np.inf
    z[rows] = sub


def _top_p(z: np.ndarray, top_p: np.ndarray) -> None:
    """Nucleus filter per row (in place): keep the most likely ids up to ``top_p`` of
    the mass, in a stable descending order with a sequential float32 cumsum."""
    rows = np.flatnonzero(top_p < 1.0)
    if rows.size == 0:
        return
    sub = z[rows]
    p = np.exp(sub - sub.max(axis=1, keepdims=True))
    order = np.argsort(-p, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)  # sequential per row
    threshold = top_p[rows].astype(F32) * cum[:, -1]  # python float * float32 -> float32
    keep = (cum < threshold[:, None]).sum(axis=1) + 1  # searchsorted(cum, thr) + 1
    drop = np.arange(sub.shape[1])[None, :] >= keep[:, None]
    remove = np.zeros_like(drop)
    np.put_along_axis(remove, order, drop, axis=1)
    sub[remove] = -np.inf
    z[rows] = sub


def choose(logits: np.ndarray, params: RowParams, gumbel: np.ndarray) -> np.ndarray:
    """Next id per row from (B, V) float32 logits and (B, V) float32 Gumbel noise.

    Gumbel-max: argmax(logits / T + g), g ~ Gumbel(0, 1), is an exact draw from
    softmax(logits / T); top-k and top-p first remove ids by setting their logits to
    -inf. Each row is computed on its own, so a row picks the same id alone or in any
    batch. Temperature 0 is argmax (greedy) on the raw logits.
    """
    if params.all_greedy:
        return np.argmax(logits, axis=1)
    if params.any_greedy:  # a mixed batch: greedy rows on the raw logits, then the rest
        out = np.argmax(logits, axis=1)
        rows = np.flatnonzero(~params.greedy)
        out[rows] = choose(logits[rows], params.take(rows), gumbel[rows])
        return out
    z = logits * params.scale[:, None]
    if params.any_top_k:
        _top_k(z, params.top_k)
    if params.any_top_p:
        _top_p(z, params.top_p)
    z += gumbel
    return np.argmax(z, axis=1)


class NoiseBank:
    """Gumbel noise for up to ``capacity`` slots, one PCG64 stream per slot.

    Memory grows with the slots actually used (capacity x 256 x V float32 at most), so
    an idle model costs nothing here.
    """

    def __init__(self, vocab_size: int, capacity: int):
        self.vocab_size, self.capacity = vocab_size, capacity
        self._buf = np.zeros((0, NOISE_BLOCK, vocab_size), F32)
        self._rngs: list[np.random.Generator | None] = [None] * capacity

    def open(self, slot: int, seed: int) -> None:
        if slot >= self._buf.shape[0]:
            grown = min(self.capacity, max(slot + 1, 2 * self._buf.shape[0], 4))
            buf = np.zeros((grown, NOISE_BLOCK, self.vocab_size), F32)
            buf[:self._buf.shape[0]] = self._buf
            self._buf = buf
        self._rngs[slot] = np.random.Generator(np.random.PCG64(seed))

    def close(self, slot: int) -> None:
        self._rngs[slot] = None

    def rows(self, slots: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Noise row for character ``n[i]`` of slot ``slots[i]`` -> (B, V)."""
        pos = n % NOISE_BLOCK
        fresh = pos == 0
        if fresh.any():
            for i in np.flatnonzero(fresh):  # a fresh block, drawn as Sampler draws it
                slot = slots[i]
                self._buf[slot] = gumbel_block(self._rngs[slot], self.vocab_size)
        # One flat take is several times cheaper than 2-D fancy indexing for small B.
        flat = self._buf.reshape(-1, self.vocab_size)
        return flat.take(slots * NOISE_BLOCK + pos, axis=0)


class Sampler:
    """Generates text from one artifact with the NumPy kernel (no TensorFlow)."""

    def __init__(self, artifact: Artifact, blas: str | int = "auto"):
        self.artifact = artifact
        self.vocab = artifact.vocab
        self.lstm = NumpyLSTM(artifact.weights, artifact.model_config)
        # "auto": both cores while the machine is idle (genmodels/blas_threads.py).
        self.blas = blas_threads.policy(blas)

    def generate(self, prime: str = "", params: SamplingParams = SamplingParams()) -> Sample:
        params.validate()
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        rng = np.random.Generator(np.random.PCG64(seed))
        stop = STOP_RULES[params.stop]
        context, encoded = start_context(self.vocab, params.stop, prime)
        state = self.lstm.start_state(1)
        ids = np.zeros(1, dtype=np.intp)
        for i in context[:-1]:  # the last context char is fed in the loop below
            ids[0] = i
            self.lstm.step_columns(ids, state)
        ids[0] = context[-1]
        rows = RowParams.of([params])  # one stream: a batch of one row
        chars = self.vocab.chars
        out: list[str] = []
        reason = "max_chars"
        tick = self.blas.tick
        for n in range(params.max_chars):
            tick("sampler")
            if n % NOISE_BLOCK == 0:  # Gumbel noise drawn in blocks: one row per char
                noise = gumbel_block(rng, len(chars))
            logits = self.lstm.step_columns(ids, state).T  # (1, V)
            at = n % NOISE_BLOCK
            nxt = int(choose(logits, rows, noise[at:at + 1])[0])
            ids[0] = nxt
            out.append(chars[nxt])
            if stop_reached(out, stop):
                del out[-len(stop):]
                reason = "stop"
                break
        text = "".join(out)
        return Sample(prime="".join(chars[i] for i in encoded.ids), text=text,
                          stop_reason=reason, seed=seed, dropped=encoded.dropped,
                          version=self.artifact.version)

