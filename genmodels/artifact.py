"""Self-describing model artifacts: one folder holds everything needed to sample.

Layout of an artifact folder::

    model.json    format, style, version, vocabulary, model + training config,
                  corpus sha256, metrics (val loss nats/char and bits/char, training
                  seconds, history), created-at, parent version
    weights.npz   NumPy arrays named embedding, lstm_<i>/{kernel,recurrent_kernel,bias},
                  dense/{kernel,bias} (Keras layouts, gate order i, f, c, o), and
                  optionally start/{h,c}_<i>: the state generation starts from
    loss.png      loss curve (optional, written by training)

Loading uses NumPy only (never TensorFlow). Saving is atomic: the folder is written
under a temporary name beside the target and renamed into place, so a reader sees the
old artifact or the new one, never half of one.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genmodels.config import ModelConfig, TrainConfig
from genmodels.vocab import Vocabulary

FORMAT = 1
META_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


class ArtifactError(Exception):
    """A missing or corrupt artifact; the message names the file."""


def weight_names(cfg: ModelConfig) -> list[str]:
    names = ["embedding"]
    for i in range(cfg.n_layers):
        names += [f"lstm_{i}/kernel", f"lstm_{i}/recurrent_kernel", f"lstm_{i}/bias"]
    return names + ["dense/kernel", "dense/bias"]


def start_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The optional warmed start state: h and c of each layer after reading real text."""
    return {f"start/{k}_{i}": (cfg.hidden,) for i in range(cfg.n_layers) for k in "hc"}


def weight_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    h = cfg.hidden
    shapes: dict[str, tuple[int, ...]] = {"embedding": (cfg.vocab_size, cfg.embed_dim)}
    for i in range(cfg.n_layers):
        n_in = cfg.embed_dim if i == 0 else h
        shapes[f"lstm_{i}/kernel"] = (n_in, 4 * h)
        shapes[f"lstm_{i}/recurrent_kernel"] = (h, 4 * h)
        shapes[f"lstm_{i}/bias"] = (4 * h,)
    shapes["dense/kernel"] = (h, cfg.vocab_size)
    shapes["dense/bias"] = (cfg.vocab_size,)
    return shapes


def new_version(style: str, when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return f"{style}-{when:%Y%m%dT%H%M%S}-{os.urandom(4).hex()}"


@dataclass
class Artifact:
    """A trained model: weights plus everything that describes them."""

    style: str
    vocab: Vocabulary
    model_config: ModelConfig
    weights: dict[str, np.ndarray]
    train_config: TrainConfig = field(default_factory=TrainConfig)
    corpus: dict = field(default_factory=dict)  # path, sha256, chars, train/val chars
    metrics: dict = field(default_factory=dict)  # val_loss_nats, val_bits_per_char, ...
    version: str = ""
    parent_version: str | None = None
    created_at: str = ""
    path: Path | None = None

    def meta(self) -> dict:
        return {
            "format": FORMAT,
            "style": self.style,
            "version": self.version,
            "parent_version": self.parent_version,
            "created_at": self.created_at,
            "vocab": "".join(self.vocab.chars),
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "corpus": self.corpus,
            "metrics": self.metrics,
            "weights_dtype": self.train_config.weights_dtype,
        }

    def save(self, target: str | Path, extra_files: dict[str, Path] | None = None) -> Path:
        """Write atomically to ``target`` (a folder), replacing any artifact there.

        ``extra_files`` maps a file name inside the artifact to a file to copy (the plot).
        """
        target = Path(target)
        check_weights(self.weights, self.model_config, WEIGHTS_FILE)
        if not self.version:
            self.version = new_version(self.style)
        self.created_at = self.created_at or dt.datetime.now(dt.UTC).isoformat(
            timespec="seconds")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            dtype = np.dtype(self.train_config.weights_dtype)
            np.savez_compressed(tmp / WEIGHTS_FILE, allow_pickle=False,
                                **{k: v.astype(dtype) for k, v in self.weights.items()})
            (tmp / META_FILE).write_text(json.dumps(self.meta(), indent=2, ensure_ascii=False)
                                         + "\n", encoding="utf-8")
            for name, src in (extra_files or {}).items():
                shutil.copy2(src, tmp / name)
            _swap_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = target
        return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing target is moved aside first.

    ``os.replace`` cannot replace a non-empty folder, so the old one is renamed away and
    removed after the new one is in place (readers never see a partial folder).
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(3).hex()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_weights(weights: dict, cfg: ModelConfig, where: str) -> None:
    expected = weight_shapes(cfg)
    missing = [k for k in expected if k not in weights]
    if missing:
        raise ArtifactError(f"{where}: missing weights {', '.join(missing)}")
    start = start_shapes(cfg)
    if any(k in weights for k in start):  # all of the start state or none of it
        missing = [k for k in start if k not in weights]
        if missing:
            raise ArtifactError(f"{where}: missing start state {', '.join(missing)}")
        expected = expected | start
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ArtifactError(f"{where}: {name} has shape {tuple(weights[name].shape)}, "
                                f"the model config needs {shape}")


def check_finite(weights: dict, where: str) -> None:
    """A NaN or inf weight (a diverged run, a float16 overflow, a flipped bit) makes
    every text garbage or every step NaN: refuse the model, naming the array."""
    for name, array in weights.items():
        if not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise ArtifactError(f"{where}: {name} holds {bad} non-finite value(s) "
                                f"(NaN or inf); refusing this model")


def load(path: str | Path) -> Artifact:
    """Load an artifact folder with NumPy only; errors name the file at fault."""
    path = Path(path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise ArtifactError(f"{path}: no model artifact here (train one with "
                            f"`python -m training train STYLE`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
        if meta.get("format") != FORMAT:
            raise ValueError(f"unsupported format {meta.get('format')!r}")
        vocab = Vocabulary(meta["vocab"])
        cfg = ModelConfig.from_dict(meta["model_config"])
        tcfg = TrainConfig.from_dict(meta.get("train_config", {}))
    except FileNotFoundError:
        raise ArtifactError(f"{meta_path}: file is missing") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{meta_path}: corrupt model description ({exc})") from None
    if len(vocab) != cfg.vocab_size:
        raise ArtifactError(f"{meta_path}: vocabulary has {len(vocab)} characters but "
                            f"vocab_size is {cfg.vocab_size}")
    try:
        with np.load(weights_path, allow_pickle=False) as npz:
            weights = {k: npz[k].astype(np.float32) for k in npz.files}
    except FileNotFoundError:
        raise ArtifactError(f"{weights_path}: file is missing") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ArtifactError(f"{weights_path}: corrupt weights ({exc})") from None
    check_weights(weights, cfg, str(weights_path))
    check_finite(weights, str(weights_path))
    return Artifact(style=meta.get("style", path.name), vocab=vocab, model_config=cfg,
                    weights=weights, train_config=tcfg, corpus=meta.get("corpus", {}),
                    metrics=meta.get("metrics", {}), version=meta.get("version", ""),
                    parent_version=meta.get("parent_version"),
                    created_at=meta.get("created_at", ""), path=path)
