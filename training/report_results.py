"""The results tables of docs/MODELS.md: read from files, never computed.

Per style, the artifact (``models/STYLE/model.json``: version, held-out loss) and
``var/quality/STYLE.json`` (written by ``python -m training quality STYLE``: the n-gram
baseline, real-word rates, verbatim 8-word runs, the first-600-chars losses and, for a
variant, its parent's loss on the variant's held-out text). A style whose quality file
is missing, or was measured on another version than the artifact's, shows "not
measured"; a style without an artifact shows "not trained". Bases get a short table of
their own: held-out loss and the cached n-gram baseline (``training.ngram``).

    python -m training report            # prints docs/MODELS.md (training/report.py)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from genmodels import artifact as artifacts
from genmodels.styles import Style, StyleBook

MARGIN_TARGET = 0.05  # nats/char: baseline - LSTM, and for a variant parent - variant
WORDS_T = "0.7"  # the temperature whose real-word rate has a target
# Real words at T=0.7 by the base a style descends from; a variant (fine-tuned from
# another style) and every other style: WORDS_TARGET.
WORDS_TARGETS = {"english": 0.90}
WORDS_TARGET = 0.80
VERBATIM_TARGET = 0.01  # the share of 8-word runs found verbatim in the corpus
TEMPERATURES = ("0.5", "0.7", "1")  # the keys of training/quality.py's JSON
NOT_MEASURED = "not measured"
NONE = "—"


@dataclass
class Figures:
    """One style's artifact and quality file (``q``, only when it is for that artifact)."""

    style: Style
    art: artifacts.Artifact | None
    missing: str = ""  # why there is no artifact
    q: dict | None = None
    note: str = ""  # why q is None


def quality_path(book: StyleBook, name: str) -> Path:
    """Where ``training.quality.save`` puts a style's figures."""
    return book.path.parent / "var" / "quality" / f"{name}.json"


def read_quality(book: StyleBook, name: str) -> dict | None:
    try:
        data = json.loads(quality_path(book, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load(style: Style) -> tuple[artifacts.Artifact | None, str]:
    """The artifact of ``style``, or None and "not trained" / "artifact unreadable"."""
    if not style.model_dir.is_dir():
        return None, "not trained"
    try:
        return artifacts.load(style.model_dir), ""
    except artifacts.ArtifactError:  # its message names absolute paths: not for the doc
        return None, "artifact unreadable (python -m training evaluate says why)"


def figures(style: Style, book: StyleBook) -> Figures:
    """The artifact of ``style`` and its quality figures, when they belong together."""
    art, missing = load(style)
    if art is None:
        return Figures(style, None, missing=missing)
    q = read_quality(book, style.name)
    if q is None:
        return Figures(style, art, note=NOT_MEASURED)
    if q.get("version") != art.version:  # measured before the model was retrained
        return Figures(style, art, note=f"{NOT_MEASURED} (quality file is for "
                                         f"{q.get('version')})")
    return Figures(style, art, q=q)


def is_variant(style: Style, book: StyleBook) -> bool:
    """A variant fine-tunes from another style (not from a base)."""
    return style.training.parent in book.styles


def root_name(style: Style, book: StyleBook) -> str:
    """The model at the top of ``style``'s fine-tuning chain (a base, or itself)."""
    seen = {style.name}
    while style.training.parent and style.training.parent not in seen:
        style = book.get(style.training.parent)
        seen.add(style.name)
    return style.name


def words_target(style: Style, book: StyleBook) -> float:
    if is_variant(style, book):
        return WORDS_TARGET
    return WORDS_TARGETS.get(root_name(style, book), WORDS_TARGET)


def best_baseline(q: dict | None) -> tuple[float, int] | None:
    """(nats/char, order) of the best n-gram order in a quality file."""
    table = (q or {}).get("baseline") or {}
    found = [(float(v), int(k)) for k, v in table.items() if v is not None]
    return min(found) if found else None


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else float(value)


def verbatim(q: dict) -> float | None:
    """The highest verbatim 8-word share over the temperatures (the target's worst case)."""
    shares = [s for s in map(_num, (q.get("verbatim8") or {}).values()) if s is not None]
    return max(shares) if shares else None


def margins(f: Figures) -> tuple[float | None, float | None]:
    """(baseline - LSTM, parent - LSTM) in nats/char; None where not measured."""
    q, best = f.q or {}, best_baseline(f.q)
    val = _num(q.get("val_loss"))
    margin = best[0] - val if best and val is not None else None
    parent = _num(q.get("parent_val_loss"))
    return margin, (parent - val if parent is not None and val is not None else None)


def misses(f: Figures, book: StyleBook) -> list[str]:
    """The targets ``f`` misses, each with its figure; empty when every one is met."""
    q, out = f.q or {}, []
    margin, parent_margin = margins(f)
    if margin is None or margin < MARGIN_TARGET:
        out.append("margin " + (NOT_MEASURED if margin is None else f"{margin:+.3f}"))
    words, want = _num((q.get("real_words") or {}).get(WORDS_T)), words_target(f.style, book)
    if words is None or words < want:
        out.append(f"words at T={WORDS_T} " + (NOT_MEASURED if words is None
                                               else f"{words:.1%} < {want:.0%}"))
    copied = verbatim(q)
    if copied is None or copied >= VERBATIM_TARGET:
        out.append("verbatim " + (NOT_MEASURED if copied is None else f"{copied:.2%}"))
    if is_variant(f.style, book) and (parent_margin is None
                                      or parent_margin < MARGIN_TARGET):
        out.append("parent margin " + (NOT_MEASURED if parent_margin is None
                                       else f"{parent_margin:+.3f}"))
    return out


def nats_cell(value) -> str:
    value = _num(value)
    return NONE if value is None else f"{value:.3f}"


def pct(value, digits: int = 1) -> str:
    value = _num(value)
    return NONE if value is None else f"{value:.{digits}%}"


def result_cells(f: Figures, book: StyleBook) -> list[str]:
    """The measured cells of one results row (after style, version, held-out loss)."""
    q = f.q or {}  # shown only with a quality file
    best = best_baseline(q)
    margin, parent_margin = margins(f)
    rates = q.get("real_words") or {}
    variant = is_variant(f.style, book)
    failed = misses(f, book)
    return [f"{best[0]:.3f} ({best[1]})" if best else "not computed",
            NONE if margin is None else f"{margin:+.3f}",
            " / ".join(pct(rates.get(t)) for t in TEMPERATURES),
            pct(verbatim(q), 2),
            f"{nats_cell(q.get('opening_zero'))} / {nats_cell(q.get('opening_start'))}",
            nats_cell(q.get("parent_val_loss")) if variant else NONE,
            (NONE if parent_margin is None else f"{parent_margin:+.3f}") if variant else NONE,
            "yes" if not failed else "no: " + ", ".join(failed)]


RESULTS_HEAD = ["style", "version", "held-out nats/char", "n-gram (order)",
                "margin", "real words T=0.5 / 0.7 / 1.0", "verbatim 8-word (worst T)",
                "first 600 chars: zero / start state", "parent on its held-out text",
                "parent margin", "targets met"]


def result_row(f: Figures, book: StyleBook) -> str:
    label = f"`/{f.style.label}`"
    if f.art is None:
        cells = [label, f.missing] + [""] * (len(RESULTS_HEAD) - 3) + [f.missing]
    elif f.q is None:
        cells = [label, f.art.version, nats_cell(f.art.metrics.get("val_loss_nats")),
                 f.note] + [""] * (len(RESULTS_HEAD) - 5) + [NOT_MEASURED]
    else:
        cells = [label, f.art.version, nats_cell(f.q.get("val_loss"))] + result_cells(f, book)
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def results_table(book: StyleBook) -> str:
    """One row per style, in config order."""
    lines = ["| " + " | ".join(RESULTS_HEAD) + " |",
             "|---|---|" + "---:|" * 8 + "---|"]
    lines += [result_row(figures(style, book), book) for style in book.styles.values()]
    return "\n".join(lines)


def base_baseline(base: Style, book: StyleBook) -> tuple[float, int] | None:
    """A base's best n-gram (nats, order): its quality file, else the baseline cache."""
    from training import ngram  # NumPy only; reads the cache, never computes

    return best_baseline(read_quality(book, base.name)) or ngram.best_cached(base, book)


BASES_HEAD = ["base", "version", "trained on", "corpus chars", "minutes trained",
              "held-out nats/char", "n-gram (order)", "margin"]


def base_row(base: Style, book: StyleBook) -> str:
    art, missing = load(base)
    if art is None:
        return "| " + " | ".join([f"`{base.name}`", missing] + [""] * 6) + " |"
    val = _num(art.metrics.get("val_loss_nats"))
    best = base_baseline(base, book)
    margin = best[0] - val if best and val is not None else None
    cells = [f"`{base.name}`", art.version, ", ".join(base.sources),
             f"{art.corpus.get('chars', 0):,}",
             f"{art.metrics.get('train_seconds', 0) / 60:.1f}", nats_cell(val),
             f"{best[0]:.3f} ({best[1]})" if best else "not computed",
             NONE if margin is None else f"{margin:+.3f}"]
    return "| " + " | ".join(cells) + " |"


def bases_table(book: StyleBook) -> str:
    lines = ["| " + " | ".join(BASES_HEAD) + " |", "|---|---|---|" + "---:|" * 5]
    lines += [base_row(base, book) for base in book.bases.values()]
    return "\n".join(lines)
