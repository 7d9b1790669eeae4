"""Which neurons of a char-LSTM mean something, and a picture of one over a text.

Three parts, NumPy + matplotlib (headless, no pyplot, no TensorFlow):

* **features**: simple character-level facts, one value per character *after* it is
  read (inside quotes, position in line, inside a word, just read a newline, upper
  case, ...);
* **picker**: every neuron (cell and hidden state of every layer) is correlated with
  every feature over the text; ``find`` returns, per layer and feature, the neuron with
  the largest |Pearson r|, best first;
* **renderer**: ``render_png`` draws the text as a character grid wrapped like the
  source, each character on a background coloured by one neuron's activation
  (diverging map, blue < 0 < red, with a legend), and returns PNG bytes.

The chat core calls ``style_picture(style_name, text)`` (the active model, cached) or
``neuron_picture(artifact, text)`` in a worker thread (it takes a fraction of a second
and must stay off the event loop)::

    png, caption = await asyncio.to_thread(style_picture, "austen", "")  # fresh sample

Layers are numbered from 1 in captions and on the command line (layer 1 reads the
characters), neurons from 0 as in the weight matrices.
"""
from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from genmodels.activations import Activations, trace
from genmodels.artifact import Artifact
from genmodels.registry import active_artifact
from genmodels.sampler import Sampler, SamplingParams

# ---------------------------------------------------------------- features


def _toggle_spans(text: str, opens: str, closes: str, both: str = "") -> np.ndarray:
    """1 after an opening mark up to (and including) its closing mark's step -> 0."""
    out, inside = np.zeros(len(text), np.float32), False
    for t, ch in enumerate(text):
        if ch in both:
            inside = not inside
        elif ch in opens:
            inside = True
        elif ch in closes:
            inside = False
        out[t] = inside
    return out


def inside_quotes(text: str) -> np.ndarray:
    return _toggle_spans(text, "\u201c\u00ab\u201e", "\u201d\u00bb", both='"')


def inside_parentheses(text: str) -> np.ndarray:
    return _toggle_spans(text, "([", ")]")


def position_in_line(text: str) -> np.ndarray:
    """Characters read since the last newline (0 on the newline itself)."""
    out, col = np.zeros(len(text), np.float32), 0
    for t, ch in enumerate(text):
        col = 0 if ch == "\n" else col + 1
        out[t] = col
    return out


def _is_word(text: str) -> np.ndarray:
    prev = " " + text[:-1]
    return np.array([ch.isalpha() or (ch in "'\u2019" and p.isalpha())
                     for ch, p in zip(text, prev, strict=True)], np.float32)


def inside_word(text: str) -> np.ndarray:
    return _is_word(text)


def position_in_word(text: str) -> np.ndarray:
    """Letters read so far in the current word (0 outside words)."""
    out, n = np.zeros(len(text), np.float32), 0
    for t, w in enumerate(_is_word(text)):
        n = n + 1 if w else 0
        out[t] = n
    return out


def upper_case_line(text: str) -> np.ndarray:
    """The line so far has capitals and no small letters (a speaker's name in a play)."""
    out, upper, lower = np.zeros(len(text), np.float32), False, False
    for t, ch in enumerate(text):
        if ch == "\n":
            upper = lower = False
        upper, lower = upper or ch.isupper(), lower or ch.islower()
        out[t] = upper and not lower
    return out


def _chars(test):
    return lambda text: np.array([test(ch) for ch in text], np.float32)


FEATURES = {
    "inside quotes": inside_quotes,
    "inside parentheses": inside_parentheses,
    "position in line": position_in_line,
    "inside a word": inside_word,
    "position in word": position_in_word,
    "after a newline": _chars(lambda ch: ch == "\n"),
    "upper case": _chars(str.isupper),
    "after a space": _chars(lambda ch: ch == " "),
    "after punctuation": _chars(lambda ch: ch in ".,;:!?"),
    "upper-case line": upper_case_line,
    "digit": _chars(str.isdigit),
}

# ---------------------------------------------------------------- picker


@dataclass(frozen=True)
class Finding:
    """One neuron and the feature it follows best; ``layer`` is 0-based."""

    layer: int
    kind: str  # "cell" or "hidden"
    neuron: int
    feature: str
    r: float  # Pearson correlation over the text

    @property
    def name(self) -> str:
        return f"layer {self.layer + 1} {self.kind} {self.neuron}"

    @property
    def label(self) -> str:
        return f"{self.name}: {self.feature} (r = {self.r:+.2f})"


def feature_matrix(text: str, features: dict | None = None) -> tuple[list[str], np.ndarray]:
    """Names and a (T, F) matrix of the features of ``text``."""
    features = features or FEATURES
    names = list(features)
    return names, np.stack([features[n](text) for n in names], axis=1)


def correlations(acts: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Pearson r of every column of ``acts`` (T, N) with every feature (T, F) -> (N, F).

    A constant column (a feature absent from the text, a dead neuron) gets r = 0.
    """
    def standardise(a):
        a = a.astype(np.float64) - a.mean(axis=0)
        norm = np.sqrt((a * a).sum(axis=0))
        return np.divide(a, norm, out=np.zeros_like(a), where=norm > 1e-9)

    return standardise(acts).T @ standardise(feats)


def find(acts: Activations, features: dict | None = None,
         kinds=("cell",)) -> list[Finding]:
    """Per layer, kind and feature the neuron with the largest |r|; best first.

    Cells by default: they carry memory across characters (quotes, line length), while
    hidden states mostly echo the character just read. With both kinds, ties go to
    the kind listed first.
    """
    names, feats = feature_matrix(acts.text, features)
    out = []
    for layer in range(acts.n_layers):
        for kind in kinds:
            r = correlations(acts.states(kind, layer), feats)
            for f, name in enumerate(names):
                n = int(np.argmax(np.abs(r[:, f])))
                if abs(r[n, f]) > 0:
                    out.append(Finding(layer, kind, n, name, float(r[n, f])))
    return sorted(out, key=lambda x: -round(abs(x.r), 6))


def describe(acts: Activations, kind: str, layer: int, neuron: int,
             features: dict | None = None) -> Finding:
    """The feature a given neuron follows best over the text."""
    names, feats = feature_matrix(acts.text, features)
    r = correlations(acts.values(kind, layer, neuron)[:, None], feats)[0]
    f = int(np.argmax(np.abs(r)))
    return Finding(layer, kind, neuron, names[f], float(r[f]))


def top_per_layer(findings: list[Finding], n: int) -> list[Finding]:
    """The ``n`` best findings of each layer, each a different neuron."""
    out: list[Finding] = []
    taken: set[tuple] = set()
    for x in findings:
        key = (x.layer, x.kind, x.neuron)
        if key not in taken and sum(o.layer == x.layer for o in out) < n:
            out.append(x)
            taken.add(key)
    return sorted(out, key=lambda x: (x.layer, -abs(x.r)))

# ---------------------------------------------------------------- renderer


WRAP = 80  # columns; longer source lines wrap at a space
CELL_W, CELL_H = 10, 18  # pixels per character cell
PAD, TITLE_H, LEGEND_H, MIN_W = 12, 34, 56, 640
DPI = 100
DISPLAY = {"\n": "\u21b5", "\t": "\u2192"}  # visible stand-ins for invisible characters
CMAP = "RdBu_r"  # diverging: blue negative, white zero, red positive
# matplotlib does not promise thread safety (shared font and text caches); the chat
# renders in worker threads, so one picture at a time (each takes well under a second).
_render_lock = threading.Lock()


@dataclass(frozen=True)
class Layout:
    """Where each character sits: ``cells[t] = (row, col)``; pixel geometry of the PNG."""

    cells: list[tuple[int, int]]
    rows: int
    cols: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        return (max(MIN_W, 2 * PAD + self.cols * CELL_W),
                TITLE_H + self.rows * CELL_H + LEGEND_H)

    def center(self, t: int) -> tuple[int, int]:
        """Pixel (x, y) of the middle of character ``t``'s cell, y from the top."""
        row, col = self.cells[t]
        return PAD + col * CELL_W + CELL_W // 2, TITLE_H + row * CELL_H + CELL_H // 2


def layout(text: str, wrap: int = WRAP) -> Layout:
    """Wrap like the source: a newline ends a row (and sits at its end); a longer line
    breaks after its last space that fits, or at ``wrap`` if it has none."""
    cells, row, start = [], 0, 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1  # the newline belongs to its line
        while start < end:
            stop = end if end - start <= wrap else start + wrap
            if stop < end:
                space = text.rfind(" ", start, stop)
                stop = space + 1 if space > start else stop
            cells += [(row, t - start) for t in range(start, stop)]
            row, start = row + 1, stop
    cols = max((c for _, c in cells), default=0) + 1
    return Layout(cells=cells, rows=max(row, 1), cols=cols)


def render_png(text: str, values: np.ndarray, title: str, legend: str = "activation",
               wrap: int = WRAP) -> bytes:
    """PNG of ``text`` with character t on a background coloured by ``values[t]``.

    The colour scale is symmetric around 0 (white) out to the largest |value|.
    """
    values = np.nan_to_num(np.asarray(values, np.float64))
    if len(values) != len(text) or not len(text):
        raise ValueError(f"need one value per character ({len(values)} for {len(text)})")
    with _render_lock:
        return _draw(text, values, title, legend, layout(text, wrap))


def _draw(text: str, values: np.ndarray, title: str, legend: str, lay: Layout) -> bytes:
    width, height = lay.size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    limit = max(float(np.abs(values).max()), 1e-6)
    norm, grid = Normalize(-limit, limit), np.full((lay.rows, lay.cols), np.nan)
    for (row, col), v in zip(lay.cells, values, strict=True):
        grid[row, col] = v
    ax = fig.add_axes((PAD / width, LEGEND_H / height, lay.cols * CELL_W / width,
                       lay.rows * CELL_H / height))
    ax.imshow(grid, cmap=CMAP, norm=norm, aspect="auto", interpolation="nearest",
              extent=(0, lay.cols, lay.rows, 0))
    ax.set_axis_off()
    with warnings.catch_warnings():  # a glyph the font lacks is drawn as a box, no noise
        warnings.simplefilter("ignore")
        for ch, (row, col), v in zip(text, lay.cells, values, strict=True):
            if ch != " ":
                dark = abs(v) > 0.6 * limit  # white letters on the deepest colours
                ax.text(col + 0.5, row + 0.55, DISPLAY.get(ch, ch), ha="center",
                        va="center", family="DejaVu Sans Mono", fontsize=10.5,
                        color="white" if dark else "black")
        fig.text(PAD / width, 1 - 6 / height, title, ha="left", va="top", fontsize=10)
        bar_w = min(220, width - 2 * PAD)
        cax = fig.add_axes((PAD / width, 28 / height, bar_w / width, 12 / height))
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), cax=cax,
                           orientation="horizontal")
        bar.ax.tick_params(labelsize=8)
        fig.text((PAD + bar_w + 10) / width, 34 / height, legend, va="center", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()

# ---------------------------------------------------------------- chat entry point


MIN_CHARS = 200  # below this, correlations are noise: the model continues the text
SAMPLE_CHARS = 400
MAX_CHARS, MAX_ROWS = 1500, 40  # Telegram wants width + height <= 10000, ratio <= 20


def fit(acts: Activations, rows: int = MAX_ROWS) -> Activations:
    """The first characters of ``acts`` whose picture has at most ``rows`` rows."""
    cells = layout(acts.text).cells
    return acts.head(next((t for t, (row, _) in enumerate(cells) if row >= rows),
                          len(cells)))


def sample_text(art: Artifact, prime: str = "", chars: int = SAMPLE_CHARS,
                seed: int | None = None, temperature: float = 0.8) -> str:
    """``prime`` continued by the model to ``chars`` characters in all."""
    params = SamplingParams(temperature=temperature, seed=seed, stop="none",
                            max_chars=max(1, chars - len(prime)))
    gen = Sampler(art).generate(prime, params)
    return gen.prime + gen.text


def picture(art: Artifact, acts: Activations, finding: Finding) -> tuple[bytes, str]:
    """PNG of ``finding``'s neuron over ``acts.text`` and its caption."""
    caption = (f"{art.style}: {finding.label} over {len(acts.text)} characters")
    values = acts.values(finding.kind, finding.layer, finding.neuron)
    png = render_png(acts.text, values, caption,
                     legend=f"{finding.name} (blue < 0 < red)")
    return png, caption


def neuron_picture(art: Artifact, text: str = "", *, seed: int | None = None,
                   layer: int | None = None, neuron: int | None = None,
                   kind: str = "cell") -> tuple[bytes, str]:
    """The most interpretable neuron over ``text`` (or a chosen one): PNG and caption.

    A text shorter than MIN_CHARS (an empty one included) is continued by the model
    first, so there is enough to correlate. ``layer`` is 0-based; giving ``neuron``
    (with ``layer``) shows that neuron instead of the best one. Raises ValueError with
    a one-line message for a bad layer/neuron or a text the model cannot read at all.
    """
    if len(text) < MIN_CHARS:
        text = sample_text(art, text, seed=seed)
    acts = fit(trace(art, text[:MAX_CHARS]))
    if not acts.text:
        raise ValueError("none of these characters is known to the model")
    if neuron is not None:
        finding = describe(acts, kind, layer or 0, neuron)
    else:
        found = [f for f in find(acts) if layer is None or f.layer == layer]
        if not found:
            raise ValueError("no neuron follows any feature of this text")
        finding = found[0]
    return picture(art, acts, finding)


def style_picture(style: str, text: str = "", seed: int | None = None,
                  shipped: Path | None = None) -> tuple[bytes, str]:
    """``neuron_picture`` of the style's active model: what ``/neurons STYLE [text]``
    sends. Blocking (a fraction of a second): call it in a worker thread."""
    return neuron_picture(active_artifact(style, shipped), text, seed=seed)
