"""Step-wise sampling from a loaded artifact: temperature, top-k, top-p, seed, stop rules.

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
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from genmodels import blas_threads
from genmodels.artifact import Artifact
from genmodels.kernel import NumpyLSTM

STOP_RULES = {"end_of_line": "\n", "blank_line": "\n\n", "none": ""}
MAX_TEMPERATURE = 5.0
# A positive temperature below this samples like greedy decoding anyway, and a tiny one
# (1e-300) makes the float32 scale 1/T infinite: ask for 0 (greedy) instead.
MIN_TEMPERATURE = 0.05
_NOISE_BLOCK = 256


def gumbel_block(rng: np.random.Generator, vocab_size: int) -> np.ndarray:
    """One block of Gumbel(0, 1) noise, (_NOISE_BLOCK, vocab_size) float32.

    -log(-log(u)) from float32 uniforms with float32 logs, which NumPy vectorises,
    instead of ``rng.gumbel`` (a float64 loop of two scalar logs per value), which at 64
    streams was a large part of each batch step. u = 0 (probability 2**-24 per value)
    gives -inf: that id is not chosen at that step.
    """
    g = rng.random((_NOISE_BLOCK, vocab_size), dtype=np.float32)
    with np.errstate(divide="ignore"):
        np.log(g, out=g)
    np.negative(g, out=g)
    np.log(g, out=g)
    np.negative(g, out=g)
    return g


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
        """Raise ValueError naming the first bad value. ``max_chars_allowed`` is the
        style's maximum and ``vocab_size`` the model's (top-k above it means nothing);
        without them only the absolute bounds are checked."""
        t = self.temperature
        if not (t == 0.0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise ValueError(f"temperature must be 0 (greedy) or between "
                             f"{MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, got {t:.3g}")
        top_k_max = 2**63 - 1 if vocab_size is None else vocab_size  # int64 per row
        if not 0 <= self.top_k <= top_k_max:
            size = "" if vocab_size is None else " (the model's vocabulary size)"
            raise ValueError(f"top-k must be 0 (off) or between 1 and {top_k_max}{size}, "
                             f"got {_short(self.top_k)}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p:g}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError("seed must be a non-negative integer below 2**63")
        if self.max_chars < 1:
            raise ValueError(f"max-chars must be at least 1, got {_short(self.max_chars)}")
        if max_chars_allowed is not None and self.max_chars > max_chars_allowed:
            raise ValueError(f"max-chars {_short(self.max_chars)} is above this style's "
                             f"maximum of {max_chars_allowed}")
        if self.stop not in STOP_RULES:
            raise ValueError(f"unknown stop rule {self.stop!r}; choose one of "
                             f"{', '.join(STOP_RULES)}")


def _short(number) -> str:
    """A number for an error message: a 4,000-digit one is cut to its first digits."""
    text = str(number)
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"


@dataclass(frozen=True)
class Generation:
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


def choose(logits: np.ndarray, params: SamplingParams, gumbel: np.ndarray) -> int:
    """Pick the next id from one stream's logits under temperature/top-k/top-p.

    Gumbel-max: argmax(logits / T + g), g ~ Gumbel(0, 1), is an exact draw from
    softmax(logits / T) and costs three array operations; top-k and top-p remove ids
    first by setting their logits to -inf.
    """
    if params.temperature == 0.0:
        return int(np.argmax(logits))
    z = logits * np.float32(1.0 / params.temperature)
    size = z.shape[0]
    if 0 < params.top_k < size:
        kth = np.partition(z, size - params.top_k)[size - params.top_k]
        z[z < kth] = -np.inf
    if params.top_p < 1.0:
        p = np.exp(z - z.max())
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = int(np.searchsorted(cum, params.top_p * cum[-1])) + 1
        z[order[keep:]] = -np.inf
    z += gumbel
    return int(np.argmax(z))


class Sampler:
    """Generates text from one artifact with the NumPy kernel (no TensorFlow)."""

    def __init__(self, artifact: Artifact, blas: str | int = "auto"):
        self.artifact = artifact
        self.vocab = artifact.vocab
        self.lstm = NumpyLSTM(artifact.weights, artifact.model_config)
        # "auto": both cores while the machine is idle (genmodels/blas_threads.py).
        self.blas = blas_threads.policy(blas)

    def generate(self, prime: str = "", params: SamplingParams = SamplingParams()) -> Generation:
        params.validate()
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        rng = np.random.Generator(np.random.PCG64(seed))
        stop = STOP_RULES[params.stop]
        encoded = self.vocab.encode(prime)
        context = self.vocab.encode(stop or "\n").ids + encoded.ids
        state = self.lstm.start_state(1)
        ids = np.zeros(1, dtype=np.intp)
        for i in context[:-1]:  # the last context char is fed in the loop below
            ids[0] = i
            self.lstm.step_columns(ids, state)
        ids[0] = context[-1] if context else 0
        chars = self.vocab.chars
        out: list[str] = []
        reason = "max_chars"
        tick = self.blas.tick
        for n in range(params.max_chars):
            tick("sampler")
            if n % _NOISE_BLOCK == 0:  # Gumbel noise drawn in blocks: one row per char
                noise = gumbel_block(rng, len(chars))
            logits = self.lstm.step_columns(ids, state)[:, 0]
            nxt = choose(logits, params, noise[n % _NOISE_BLOCK])
            ids[0] = nxt
            out.append(chars[nxt])
            if stop and chars[nxt] == stop[-1] and _stopped(out, stop):
                del out[-len(stop):]
                reason = "stop"
                break
        text = "".join(out)
        return Generation(prime="".join(chars[i] for i in encoded.ids), text=text,
                          stop_reason=reason, seed=seed, dropped=encoded.dropped,
                          version=self.artifact.version)


def _stopped(out: list[str], stop: str) -> bool:
    """True when ``out`` ends with ``stop`` and has some real text before it."""
    n = len(stop)
    if len(out) < n or "".join(out[-n:]) != stop:
        return False
    return any(not ch.isspace() for ch in out[:-n])
