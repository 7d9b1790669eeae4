"""Train one style's char-LSTM for a wall-clock budget and publish its artifact.

Sequence-to-sequence training (every position of a window is a target) with Adam,
gradient clipping and a learning rate that warms up and then follows a cosine over
the *time* budget, so the run anneals properly whatever the machine's speed. Each
"epoch" (``steps_per_epoch`` steps) prints a progress line, scores the held-out split,
keeps the best weights and writes a checkpoint (``var/runs/STYLE/``) that ``--resume``
continues from. Early stopping ends a run whose held-out loss stopped improving.

    python -m training train STYLE [--minutes M] [--resume]
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from genmodels import artifact as artifacts, widen
from genmodels.config import ModelConfig, TrainConfig
from genmodels.sampler import start_text
from genmodels.styles import Style, StyleBook
from genmodels.vocab import Vocabulary
from settings import ROOT
from training import base_corpus, corpus as corpora, warm
from training.data import train_dataset
from training.evaluate import bits, val_loss
from training.keras_model import build_model, get_weights, set_weights
from training.plots import plot_history

# TRAINING_RUNS: the scheduler gives each retrain its own checkpoint folder.
RUNS = Path(os.environ.get("TRAINING_RUNS") or ROOT / "var" / "runs")
VAL_LIMIT_PER_EPOCH = 131072  # chars scored after each epoch; the final score uses all


@dataclass
class RunState:
    """What a checkpoint needs besides the Keras model: progress and history."""

    epoch: int = 0
    seconds: float = 0.0  # training seconds spent so far in this run, resumes included
    steps: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RunState:
        return cls(**json.loads(path.read_text()))


def lr_at(cfg: TrainConfig, step: int, frac: float) -> float:
    """Linear warm-up over steps, then cosine decay over the fraction of time used."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return cfg.learning_rate * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


class Progress(keras.callbacks.Callback):
    """Time budget, LR schedule, per-epoch scoring, best weights, checkpoints."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run
        self.start = time.monotonic()
        self.step = run.state.steps  # global step, for the warm-up

    def elapsed(self) -> float:
        return self.run.state.seconds + time.monotonic() - self.start

    def on_train_batch_begin(self, batch, logs=None):
        lr = lr_at(self.run.cfg, self.step, self.elapsed() / self.run.budget)
        self.model.optimizer.learning_rate.assign(lr)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.elapsed() >= self.run.budget:
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        # A fine-tune starts from a model that may already be good here: score it first,
        # so the published model is never worse than its parent on this held-out text.
        if self.run.parent is not None and not self.run.state.history:
            self._record(math.nan, epoch_done=False)

    def on_epoch_end(self, epoch, logs=None):
        self._record(float((logs or {}).get("loss", math.nan)), epoch_done=True)
        run, state = self.run, self.run.state
        self.model.save(run.dir / "checkpoint.keras")
        state.save(run.dir / "state.json")
        if state.bad_epochs >= run.cfg.patience:
            print(f"early stop: no improvement for {state.bad_epochs} epochs", flush=True)
            self.model.stop_training = True

    def _record(self, train_loss: float, epoch_done: bool) -> None:
        """Score held-out text, keep the best weights, print the progress line."""
        run, state = self.run, self.run.state
        weights = get_weights(self.model, run.model_cfg)
        val = val_loss(weights, run.model_cfg, run.val_ids, limit=VAL_LIMIT_PER_EPOCH)
        state.epoch += epoch_done
        state.steps = self.step
        state.seconds = self.elapsed()
        self.start = time.monotonic()
        lr = float(self.model.optimizer.learning_rate)
        state.history.append({"epoch": state.epoch, "minutes": state.seconds / 60,
                              "train_loss": train_loss, "val_loss": val, "lr": lr})
        if val < state.best_val:
            state.best_val, state.bad_epochs = val, 0
            np.savez(run.dir / "best.npz", allow_pickle=False, **weights)
        else:
            state.bad_epochs += 1
        print(f"epoch {state.epoch:3d}  {state.seconds / 60:5.1f} min  train {train_loss:.4f}  "
              f"val {val:.4f} nats/char ({bits(val):.3f} bits)  lr {lr:.2e}", flush=True)


class Run:
    """One training run of one style, from scratch, fine-tuned or resumed."""

    def __init__(self, style: Style, book: StyleBook, minutes: float | None = None,
                 resume: bool = False, runs_dir: Path = RUNS, out_dir: Path | None = None,
                 scratch: bool = False, init: Path | None = None,
                 learning_rate: float | None = None):
        self.style = style
        self.cfg = replace(style.training, minutes=minutes or style.training.minutes)
        if scratch:  # ignore the configured parent: train from random weights
            self.cfg = replace(self.cfg, parent="")
        if learning_rate is not None:  # a fine-tune of a trained model wants a gentler one
            self.cfg = replace(self.cfg, learning_rate=learning_rate)
        self.budget = self.cfg.minutes * 60
        self.dir = runs_dir / style.name
        self.out_dir = out_dir or style.model_dir
        self.parent = None
        if style.sources:  # a base model: its corpus is written from its styles' text
            base_corpus.build(style, book)
        _, _, chars = corpora.scan(style.corpus)
        if init is not None or self.cfg.parent:
            # ``init``: continue from any artifact (the scheduler passes the style's
            # active version); else the configured parent style's shipped model.
            self.parent = artifacts.load(init or book.get(self.cfg.parent).model_dir)
            new = widen.missing(self.parent, chars)
            if new:  # the corpus gained characters: the parent learns to read and write them
                print(f"{style.name}: {len(new)} corpus character(s) {new!r} are new to "
                      f"{self.parent.version}; its vocabulary grows to hold them", flush=True)
                self.parent = widen.widen(self.parent, chars)
            # The parent fixes the shape; dropout is training-only, so the style's own
            # setting ([model] or [styles.NAME.model], checked at load) applies too.
            parent_cfg = self.parent.model_config
            self.vocab = self.parent.vocab
            self.model_cfg = replace(parent_cfg,
                                     dropout=style.model.get("dropout", parent_cfg.dropout))
        else:
            self.vocab = Vocabulary(chars)
            self.model_cfg = ModelConfig.from_dict({"vocab_size": len(self.vocab)} | style.model)
        exclude: set[str] = set()
        for other in style.exclude_heldout_of:
            exclude |= corpora.heldout_lines(book.get(other).corpus, self.cfg.val_fraction)
        self.data = corpora.prepare(style.corpus, self.vocab, self.cfg.val_fraction,
                                    self.cfg.seq_len, exclude)
        self.val_ids = corpora.read_ids(self.data.val_path)
        self.state = RunState()
        self.resume = resume

    def _model(self) -> keras.Model:
        ckpt = self.dir / "checkpoint.keras"
        if self.resume:
            if not ckpt.exists():
                raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
            self.state = RunState.load(self.dir / "state.json")
            print(f"resuming {self.style.name} after epoch {self.state.epoch} "
                  f"({self.state.seconds / 60:.1f} min)", flush=True)
            self.budget += self.state.seconds  # --minutes more on top of what was spent
            return keras.saving.load_model(ckpt)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        keras.utils.set_random_seed(self.cfg.seed)
        model = build_model(self.model_cfg, precision=self.cfg.precision)
        if self.parent is not None:
            set_weights(model, self.model_cfg, self.parent.weights)
        model.compile(optimizer=keras.optimizers.Adam(self.cfg.learning_rate,
                                                      global_clipnorm=self.cfg.clipnorm),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      # XLA fuses the LSTM loop body (float32: ~1.6x faster on CPU), but
                      # runs bfloat16 slower than without it (bench/training.py).
                      jit_compile=self.cfg.precision == "float32")
        return model

    def train(self) -> artifacts.Artifact:
        model = self._model()
        data = train_dataset(self.data.train_path, self.data.train_chars, self.cfg.seq_len,
                             self.cfg.batch_size, self.cfg.seed + self.state.epoch)
        print(f"training {self.style.name}: {self.model_cfg.n_params():,} params, "
              f"{self.data.train_chars:,} train / {self.data.val_chars:,} val chars, "
              f"{self.cfg.minutes:g} min budget", flush=True)
        model.fit(data, epochs=10**6, initial_epoch=self.state.epoch,
                  steps_per_epoch=self.cfg.steps_per_epoch, verbose=0, shuffle=False,
                  callbacks=[Progress(self)])
        return self.publish()

    def publish(self) -> artifacts.Artifact:
        """Best weights, rounded to the shipped dtype, scored on all held-out text."""
        with np.load(self.dir / "best.npz") as npz:
            weights = {k: npz[k] for k in npz.files}
        dtype = np.dtype(self.cfg.weights_dtype)
        weights = {k: v.astype(dtype).astype(np.float32) for k, v in weights.items()}
        val = val_loss(weights, self.model_cfg, self.val_ids)
        stop = self.vocab.encode(start_text(self.style.stop)).ids
        weights |= warm.start_state(weights, self.model_cfg,
                                    corpora.read_ids(self.data.train_path), stop)
        art = artifacts.Artifact(
            style=self.style.name, vocab=self.vocab, model_config=self.model_cfg,
            weights=weights, train_config=self.cfg,
            corpus=self.data.corpus_info(self.style.corpus),
            metrics={"val_loss_nats": round(val, 5), "val_bits_per_char": round(bits(val), 5),
                     "train_seconds": round(self.state.seconds, 1),
                     "epochs": self.state.epoch,
                     "steps": self.state.steps,
                     "history": self.state.history},
            parent_version=self.parent.version if self.parent else None)
        plot = plot_history(self.state.history, self.dir / "loss.png",
                            title=f"{self.style.name}: held-out loss")
        art.save(self.out_dir, extra_files={"loss.png": plot})
        print(f"published {art.version} to {self.out_dir}", flush=True)
        print(f"val_loss_nats={val:.4f} bits_per_char={bits(val):.4f}", flush=True)
        return art
