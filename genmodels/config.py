"""Frozen configuration dataclasses for the model and for its training run.

Both travel inside every artifact (``model.json``) so an artifact can be rebuilt and
its training repeated without anything else. Neither imports TensorFlow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

_TYPES = {"int": (int,), "float": (int, float), "str": (str,)}
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies training may use


def _from_dict(cls, data: dict):
    """Build a dataclass from a dict, rejecting unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a table, got {data!r}")
    kinds = {f.name: _TYPES[str(f.type)] for f in fields(cls)}  # annotations are strings here
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, kinds[name]):
            raise TypeError(f"{name} must be of type {kinds[name][-1].__name__}, got {value!r}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Embedding -> n_layers x LSTM(hidden) -> Dense(vocab_size) logits."""

    vocab_size: int
    embed_dim: int = 64
    hidden: int = 256
    n_layers: int = 2
    dropout: float = 0.0  # between LSTM layers, training only

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("ModelConfig.dropout must be in [0, 1)")

    def n_params(self) -> int:
        h, e, v = self.hidden, self.embed_dim, self.vocab_size
        lstm = sum(4 * h * ((e if i == 0 else h) + h + 1) for i in range(self.n_layers))
        return v * e + lstm + h * v + v

    to_dict = asdict

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; every field can be set per style in config.toml."""

    minutes: float = 10.0  # wall-clock budget
    seq_len: int = 128  # chars per training window; every position is a target
    batch_size: int = 64
    learning_rate: float = 3e-3  # peak; cosine-decayed over the time budget
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    clipnorm: float = 1.0
    val_fraction: float = 0.1  # last part of the corpus, never trained on
    steps_per_epoch: int = 400  # an "epoch" is this many steps: a progress line + val check
    patience: int = 4  # epochs without val improvement before early stopping
    seed: int = 1234
    weights_dtype: str = "float32"  # "float16" halves shipped artifacts
    # "mixed_bfloat16": bfloat16 compute with float32 weights, without XLA (bench/training.py
    # measures both on this CPU; XLA's CPU bfloat16 is the slower of the four).
    precision: str = "float32"
    parent: str = ""  # style whose active model this run fine-tunes ("" = from scratch)

    def __post_init__(self):
        positive = ("minutes", "seq_len", "batch_size", "learning_rate", "steps_per_epoch",
                    "clipnorm")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError("TrainConfig.val_fraction must be in (0, 0.5)")
        if self.weights_dtype not in ("float32", "float16"):
            raise ValueError("TrainConfig.weights_dtype must be float32 or float16")
        if self.precision not in PRECISIONS:
            raise ValueError("TrainConfig.precision must be float32 or mixed_bfloat16")

    to_dict = asdict

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return _from_dict(cls, data)
