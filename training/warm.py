"""The warmed start state stored in an artifact: where generation begins.

Training windows start mid-text, so a model never learns to continue from a zero
state; a sample that starts there writes worse text for its first few hundred
characters. The start state is the one the model reaches after reading
``WARM_CHARS`` characters of its training text that end just before a stop sequence
(a paragraph or line end), so the sampler, which feeds the stop sequence next, begins
as the model would after a real paragraph.

    art.weights |= start_state(art.weights, art.model_config, train_ids, stop_ids)

    python -m training warm STYLE [--model DIR]   # give an existing artifact its start state
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from genmodels import artifact as artifacts
from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM
from genmodels.sampler import start_text
from training import corpus as corpora

WARM_CHARS = 2000


def warm_end(ids: np.ndarray, stop_ids: list[int], warm: int = WARM_CHARS) -> int:
    """The last position where ``stop_ids`` begins with ``warm`` chars before it.

    Falls back to the end of the text when the stop sequence never occurs there.
    """
    ids = np.asarray(ids)
    n = len(stop_ids)
    if n == 0 or len(ids) < warm + n:
        return len(ids)
    hits = np.ones(len(ids) - n + 1, dtype=bool)
    for k, s in enumerate(stop_ids):
        hits &= ids[k:len(ids) - n + 1 + k] == s
    where = np.flatnonzero(hits[warm:]) + warm
    return int(where[-1]) if len(where) else len(ids)


def start_state(weights: dict[str, np.ndarray], cfg: ModelConfig, ids: np.ndarray,
                stop_ids: list[int], warm: int = WARM_CHARS) -> dict[str, np.ndarray]:
    """``start/{h,c}_<i>`` arrays: the state after the ``warm`` chars before a stop."""
    end = warm_end(ids, stop_ids, warm)
    text = np.asarray(ids[max(0, end - warm):end], dtype=np.intp)
    lstm = NumpyLSTM(weights, cfg)
    state = lstm.zero_state(1)
    step = np.zeros(1, dtype=np.intp)
    for i in text:
        step[0] = i
        lstm.step_columns(step, state)
    out = {}
    for i in range(cfg.n_layers):
        out[f"start/h_{i}"] = state.h(i)[:, 0].copy()
        out[f"start/c_{i}"] = state.c[i][:, 0].copy()
    return out


def warm_artifact(style, book, model_dir=None) -> artifacts.Artifact:
    """Store (or replace) the start state of ``style``'s artifact, read from its training text.

    The version stays: the model's weights, and so every figure measured on held-out
    text from a zero state, are unchanged; only where sampling begins moves.
    """
    folder = Path(model_dir or style.model_dir)
    art = artifacts.load(folder)
    exclude: set[str] = set()
    for other in style.exclude_heldout_of:
        exclude |= corpora.heldout_lines(book.get(other).corpus, art.train_config.val_fraction)
    data = corpora.prepare(style.corpus, art.vocab, art.train_config.val_fraction,
                           art.train_config.seq_len, exclude)
    stop = art.vocab.encode(start_text(style.stop)).ids
    art.weights |= start_state(art.weights, art.model_config, corpora.read_ids(data.train_path),
                               stop)
    # Keep what else the folder holds (the loss plot): save() replaces the whole folder.
    extra = {f.name: f for f in folder.iterdir()
             if f.is_file() and f.name not in (artifacts.META_FILE, artifacts.WEIGHTS_FILE)}
    with tempfile.TemporaryDirectory() as keep:
        kept = {name: Path(shutil.copy2(src, Path(keep) / name)) for name, src in extra.items()}
        art.save(folder, extra_files=kept)
    return art


def add_parser(sub) -> None:
    p = sub.add_parser("warm", help="store a warmed start state in STYLE's artifact")
    p.add_argument("style")
    p.add_argument("--model", type=Path, help="artifact folder (default: models/STYLE)")


def run(book, args) -> None:
    art = warm_artifact(book.get(args.style), book, args.model)
    print(f"{art.version}: start state stored in {art.path}")
