"""How readable a style's model is: real words, copied 8-word runs, held-out losses.

    python -m training quality STYLE [--model DIR]
    # last line: quality STYLE val=<f> baseline=<f> real_words_0.7=<f> verbatim8=<f>

The figures (NumPy only, never TensorFlow; also saved as ``var/quality/STYLE.json``
beside config.toml):

* **Words.** A word is a run of two or more letters of the lowercased text
  (``[^\\W\\d_]{2,}``). It is *real* when it occurs in the training part of the corpus
  (the text before ``corpus.val_start``); a variant (a style with ``training.parent``)
  looks its words up in its parent's corpus training part instead (its own, with a
  note, while a base parent's corpus has not been written yet).
* **Real-word rate** at T = 0.5, 0.7, 1.0: 40 samples of 400 characters (seeds 1-40,
  an empty prime, stop rule "none"); real words / all words over the 40 samples.
* **Verbatim 8-word runs** (memorisation), per temperature: the share of the samples'
  8-word sequences (8 consecutive words of one sample) that occur as 8 consecutive words
  of the whole corpus (for a variant: of its corpus or its parent's, which it was
  trained on too).
* **Held-out loss** (``training.evaluate.val_loss``) and the n-gram baseline on the
  same text (``training.ngram.baseline``; reported missing if that module is absent).
  A variant also gets its parent model's loss on the variant's held-out text, with the
  parent's vocabulary widened to the variant's characters (``genmodels.widen``); a
  parent without a model is noted instead.
* **The first 600 characters**: at up to 64 places of the held-out text that directly
  follow the style's stop sequence (and do not repeat its last character), the loss of
  the next 600 characters after the stop sequence is fed into a zero LSTM state and into
  the model's start state (``NumpyLSTM.start_state``; zeros where the artifact stores
  none). All places step together as one batch of columns.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genmodels import artifact as artifacts, widen
from genmodels.kernel import NumpyLSTM, State
from genmodels.sampler import Sampler, SamplingParams, start_text
from genmodels.styles import Style, StyleBook
from training import corpus as corpora
from training.evaluate import val_loss

WORD = re.compile(r"[^\W\d_]{2,}")
TEMPERATURES = (0.5, 0.7, 1.0)
SAMPLES = 40  # seeds 1..SAMPLES
SAMPLE_CHARS = 400
RUN = 8  # words in a verbatim run
PLACES = 64
OPENING_CHARS = 600
HEADLINE_T = 0.7  # the temperature of the last line's figures


def words(text: str) -> list[str]:
    """The words of ``text``: runs of two or more letters, lowercased."""
    return WORD.findall(text.lower())


def read_text(path: Path) -> str:
    """The whole corpus, newlines as stored (the way ``training.corpus`` counts chars)."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def training_part(path: Path, val_fraction: float) -> str:
    """The text of ``path`` before its held-out split."""
    text = read_text(path)
    return text[:corpora.val_start(path, len(text), val_fraction)]


def lexicon_source(style: Style, book: StyleBook) -> Style:
    """The style whose corpus decides which words are real: the parent for a variant
    (a style fine-tuned from another style: /proverb's variants read against the
    all-cultures corpus), else the style itself. A base's corpus is every style's text
    together, so a style fine-tuned from a base keeps its own words: "real" means
    the style's vocabulary, not the language's."""
    parent = book.styles.get(style.training.parent) if style.training.parent else None
    return parent if parent is not None and parent.corpus.is_file() else style


def lexicon(style: Style, book: StyleBook) -> set[str]:
    """The real words: those of the training part of the (parent's) corpus."""
    source = lexicon_source(style, book)
    return set(words(training_part(source.corpus, source.training.val_fraction)))


def real_words(texts: list[str], known: set[str]) -> tuple[int, int]:
    """(real words, all words) over ``texts``."""
    found = [w for text in texts for w in words(text)]
    return sum(w in known for w in found), len(found)


class RunIndex:
    """Every run of ``n`` consecutive words of some texts, for exact look-ups.

    Words become ids; a run is the bytes of its ``n`` ids, kept sorted in one array.
    A run never spans two texts.
    """

    def __init__(self, texts: list[str], n: int = RUN):
        self.n = n
        self.ids: dict[str, int] = {}
        runs = [self._runs([self.ids.setdefault(w, len(self.ids)) for w in words(t)])
                for t in texts]
        self.runs = np.unique(np.concatenate(runs))

    def _runs(self, ids: list[int]) -> np.ndarray:
        """The runs of ``ids`` as one void value each (of ``n`` int32s)."""
        row = np.dtype((np.void, 4 * self.n))
        if len(ids) < self.n:
            return np.empty(0, row)
        grams = np.lib.stride_tricks.sliding_window_view(np.asarray(ids, np.int32), self.n)
        return np.ascontiguousarray(grams).view(row).ravel()

    def count(self, texts: list[str]) -> tuple[int, int]:
        """(runs found in the index, all runs) over the runs within each of ``texts``."""
        found = total = 0
        for text in texts:
            runs = self._runs([self.ids.get(w, -1) for w in words(text)])
            found += int(np.isin(runs, self.runs).sum())
            total += len(runs)
        return found, total


def samples(sampler: Sampler, temperature: float) -> list[str]:
    """The ``SAMPLES`` texts of ``SAMPLE_CHARS`` characters at one temperature."""
    return [sampler.generate("", SamplingParams(temperature=temperature, seed=seed,
                                                max_chars=SAMPLE_CHARS, stop="none")).text
            for seed in range(1, SAMPLES + 1)]


def _nats(logits: np.ndarray, targets: np.ndarray) -> float:
    """Summed cross-entropy of (vocab, batch) logits against one target per column."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=0)
    lse = top + np.log(np.exp(logits - top).sum(axis=0))
    return float((lse - logits[targets, np.arange(len(targets))]).sum())


def opening_places(ids: np.ndarray, stop: list[int], count: int = PLACES,
                   length: int = OPENING_CHARS) -> np.ndarray:
    """Up to ``count`` positions of ``ids``, evenly spread, that directly follow the
    ids ``stop``, do not start with the stop's last id again, and have ``length`` ids."""
    ids, k = np.asarray(ids), len(stop)
    ends = np.arange(k, len(ids) - length + 1)
    match = ids[ends] != stop[-1]
    for j, s in enumerate(stop):
        match &= ids[ends - k + j] == s
    found = ends[match]
    if len(found) > count:
        found = found[np.linspace(0, len(found) - 1, count).round().astype(int)]
    return found


def opening_loss(lstm: NumpyLSTM, ids: np.ndarray, stop: list[int], places: np.ndarray,
                 state: State, length: int = OPENING_CHARS) -> float:
    """Mean nats/char of the ``length`` ids at each place (one column each of ``state``,
    which advances) after the ``stop`` ids are fed; NaN when there is no place."""
    if len(places) == 0:
        return math.nan
    grid = np.stack([np.asarray(ids[p:p + length]) for p in places]).astype(np.intp)
    batch = len(places)
    for s in stop[:-1]:
        lstm.step_columns(np.full(batch, s, np.intp), state)
    feed, total = np.full(batch, stop[-1], np.intp), 0.0
    for t in range(length):
        total += _nats(lstm.step_columns(feed, state), grid[:, t])
        feed = grid[:, t]
    return total / (batch * length)


@dataclass
class Quality:
    """Every figure of one style's model; temperatures are the keys of the dicts."""

    style: str
    version: str
    val_loss: float  # nats/char on the held-out text
    val_chars: int
    baseline: dict[int, float] | None  # n-gram order -> nats/char; None: not available
    real_words: dict[float, float] = field(default_factory=dict)  # T -> rate
    words: dict[float, int] = field(default_factory=dict)  # T -> words counted
    verbatim8: dict[float, float] = field(default_factory=dict)  # T -> share of runs
    runs8: dict[float, int] = field(default_factory=dict)  # T -> 8-word runs counted
    opening_zero: float = math.nan  # first 600 chars after the stop, zero state
    opening_start: float = math.nan  # the same from the model's start state
    opening_places: int = 0
    stop: str = ""
    lexicon: str = ""  # the corpus whose training part holds the real words
    lexicon_words: int = 0  # distinct real words
    parent: str = ""
    parent_version: str = ""
    parent_val_loss: float | None = None  # the parent model on this held-out text
    parent_note: str = ""  # why it is None for a style with a parent

    @property
    def baseline_best(self) -> float:
        return min(self.baseline.values()) if self.baseline else math.nan

    def to_dict(self) -> dict:
        """JSON-ready: temperature keys as "0.7", NaN as null."""
        def clean(value):
            if isinstance(value, dict):
                return {(f"{k:g}" if isinstance(k, float) else str(k)): clean(v)
                        for k, v in value.items()}
            return None if isinstance(value, float) and math.isnan(value) else value
        return clean(asdict(self) | {"baseline_best": self.baseline_best})

    def lines(self) -> list[str]:
        """The printable block, one figure per line; the last one sums it up."""
        out = [f"{self.style} ({self.version})",
               f"held-out loss: {self.val_loss:.4f} nats/char ({self.val_chars:,} chars)"]
        if self.baseline is None:
            out.append("n-gram baseline: missing (training/ngram.py not available)")
        for order, nats in sorted((self.baseline or {}).items()):
            out.append(f"n-gram baseline, order {order}: {nats:.4f} nats/char")
        if self.parent_val_loss is not None:
            out.append(f"parent {self.parent} ({self.parent_version}) on this held-out "
                       f"text: {self.parent_val_loss:.4f} nats/char")
        elif self.parent:
            out.append(f"parent {self.parent}: not measured ({self.parent_note})")
        where = f"{OPENING_CHARS} chars after {self.stop!r} at {self.opening_places} places"
        out.append(f"first {where}, zero state: {self.opening_zero:.4f} nats/char")
        out.append(f"first {where}, start state: {self.opening_start:.4f} nats/char")
        out.append(f"lexicon: {self.lexicon_words:,} words of {self.lexicon}")
        for t in self.real_words:
            out.append(f"real words at T={t:g}: {self.real_words[t]:.4f} "
                       f"(of {self.words[t]:,} words)")
        for t in self.verbatim8:
            out.append(f"verbatim {RUN}-word runs at T={t:g}: {self.verbatim8[t]:.4f} "
                       f"(of {self.runs8[t]:,} runs)")
        out.append(f"quality {self.style} val={self.val_loss:.4f} "
                   f"baseline={self.baseline_best:.4f} "
                   f"real_words_{HEADLINE_T:g}={self.real_words.get(HEADLINE_T, math.nan):.4f} "
                   f"verbatim8={self.verbatim8.get(HEADLINE_T, math.nan):.4f}")
        return out


def heldout_ids(style: Style, art: artifacts.Artifact, val_fraction: float) -> np.ndarray:
    """The style's held-out ids under ``art``'s vocabulary (the corpus cache's files)."""
    data = corpora.prepare(style.corpus, art.vocab, val_fraction, art.train_config.seq_len)
    return corpora.read_ids(data.val_path)


def _baseline(style: Style, book: StyleBook) -> dict[int, float] | None:
    try:
        from training.ngram import baseline
    except ImportError:
        return None
    return {int(k): float(v) for k, v in baseline(style, book).items()}


def _samples_figures(q: Quality, art: artifacts.Artifact, style: Style,
                     book: StyleBook) -> None:
    """Real-word rates and verbatim runs at every temperature, into ``q``."""
    known = lexicon(style, book)
    source = lexicon_source(style, book).corpus
    q.lexicon_words, q.lexicon = len(known), str(source)
    if source.is_relative_to(book.path.parent):
        q.lexicon = str(source.relative_to(book.path.parent))
    corpus_paths = {style.corpus, source}
    index = RunIndex([read_text(p) for p in sorted(corpus_paths)])
    sampler = Sampler(art)
    for t in TEMPERATURES:
        texts = samples(sampler, t)
        real, q.words[t] = real_words(texts, known)
        q.real_words[t] = real / q.words[t] if q.words[t] else math.nan
        found, q.runs8[t] = index.count(texts)
        q.verbatim8[t] = found / q.runs8[t] if q.runs8[t] else math.nan


def _opening_figures(q: Quality, art: artifacts.Artifact, ids: np.ndarray,
                     stop: str) -> None:
    """The first-600-characters losses from a zero and from the start state, into ``q``."""
    lstm = NumpyLSTM(art.weights, art.model_config)
    stop_ids = [art.vocab.index.get(ch, -1) for ch in stop]  # -1: no place matches
    places = opening_places(ids, stop_ids)
    start = getattr(lstm, "start_state", lstm.zero_state)
    q.opening_places = len(places)
    q.opening_zero = opening_loss(lstm, ids, stop_ids, places, lstm.zero_state(len(places)))
    q.opening_start = opening_loss(lstm, ids, stop_ids, places, start(len(places)))


def _parent_figures(q: Quality, style: Style, parent: artifacts.Artifact,
                    val_fraction: float) -> None:
    """A variant's parent model scored on the variant's held-out text, into ``q``."""
    wide = widen.widen(parent, corpora.scan(style.corpus)[2])
    ids = heldout_ids(style, wide, val_fraction)
    q.parent_version = parent.version
    q.parent_val_loss = val_loss(wide.weights, wide.model_config, ids)


def _parent_artifact(style: Style, book: StyleBook) -> tuple[artifacts.Artifact | None, str]:
    """The parent's model, or None and why (no parent, or no usable model yet)."""
    if not style.training.parent:
        return None, ""
    try:
        return artifacts.load(book.get(style.training.parent).model_dir), ""
    except artifacts.ArtifactError as exc:
        return None, str(exc)


def measure(style: Style | str, book: StyleBook, model_dir: Path | None = None) -> Quality:
    """Every figure for ``style``'s artifact (``model_dir`` or models/STYLE)."""
    style = book.get(style) if isinstance(style, str) else style
    art = artifacts.load(model_dir or style.model_dir)
    parent_art, note = _parent_artifact(style, book)
    scored = widen.widen(art, corpora.scan(style.corpus)[2])  # same model on known chars
    fraction = art.train_config.val_fraction
    ids = heldout_ids(style, scored, fraction)
    q = Quality(style=style.name, version=art.version,
                val_loss=val_loss(scored.weights, scored.model_config, ids),
                val_chars=len(ids), baseline=_baseline(style, book),
                parent=style.training.parent, parent_note=note)
    q.stop = start_text(style.stop)  # what the sampler feeds before a sample
    _opening_figures(q, scored, ids, q.stop)
    if parent_art is not None:
        _parent_figures(q, style, parent_art, fraction)
    _samples_figures(q, art, style, book)
    return q


def save(q: Quality, book: StyleBook) -> Path:
    """Write ``var/quality/STYLE.json`` beside the config file."""
    path = book.path.parent / "var" / "quality" / f"{q.style}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(q.to_dict(), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def add_parser(sub) -> None:
    """Register ``quality STYLE [--model DIR]`` on ``python -m training``'s subparsers."""
    q = sub.add_parser("quality", help="real words, copied 8-word runs and held-out "
                                       "losses of STYLE's model (var/quality/STYLE.json)")
    q.add_argument("style")
    q.add_argument("--model", type=Path, help="artifact folder (default: models/STYLE)")


def run(book: StyleBook, args) -> None:
    q = measure(args.style, book, args.model)
    path = save(q, book)
    print(f"saved {path}")
    print("\n".join(q.lines()))
