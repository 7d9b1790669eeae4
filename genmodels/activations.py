"""Per-character LSTM states of a text, from the NumPy kernel (no TensorFlow).

``trace(artifact, text)`` feeds the text through ``genmodels.kernel.NumpyLSTM`` one
character at a time, exactly as the sampler does, and records every layer's hidden
state h and cell state c *after* each character is read. Like the sampler, the start
text of a stop rule (``sampler.start_text``; by default rule "none", a newline, as for
the samples ``neurons`` pictures) is fed first and not recorded, so the model reads the
text as the start of a fresh story or paragraph.

    from genmodels import artifact
    from genmodels.activations import trace
    acts = trace(artifact.load("models/austen"), '"Oh!" said she.')
    acts.cell[0][:, 17]      # layer 0, cell 17, one value per character of acts.text

Characters the vocabulary has never seen follow the vocabulary's policy (look-alike or
dropped); ``acts.text`` is the text as the model read it, one entry per recorded step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genmodels.artifact import Artifact
from genmodels.kernel import NumpyLSTM
from genmodels.sampler import start_text

KINDS = ("cell", "hidden")


@dataclass(frozen=True)
class Activations:
    """States after each character: ``hidden[layer]`` and ``cell[layer]`` are (T, H)."""

    text: str  # the text as the model read it; len(text) == T
    hidden: list[np.ndarray]
    cell: list[np.ndarray]
    dropped: str  # input characters the vocabulary could not represent

    @property
    def n_layers(self) -> int:
        return len(self.hidden)

    @property
    def size(self) -> int:
        """Neurons per layer (the LSTM's hidden size)."""
        return self.hidden[0].shape[1]

    def head(self, n: int) -> Activations:
        """The first ``n`` characters and their states."""
        return Activations(self.text[:n], [h[:n] for h in self.hidden],
                           [c[:n] for c in self.cell], self.dropped)

    def states(self, kind: str, layer: int) -> np.ndarray:
        """(T, H) array of ``kind`` ("cell" or "hidden") for a 0-based ``layer``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer must be between 1 and {self.n_layers}, got {layer + 1}")
        return (self.cell if kind == "cell" else self.hidden)[layer]

    def values(self, kind: str, layer: int, neuron: int) -> np.ndarray:
        """One neuron's activation per character, shape (T,)."""
        if not 0 <= neuron < self.size:
            raise ValueError(f"neuron must be between 0 and {self.size - 1}, got {neuron}")
        return self.states(kind, layer)[:, neuron]


def trace(art: Artifact, text: str, stop: str = "none",
          lstm: NumpyLSTM | None = None) -> Activations:
    """Run ``text`` through the kernel after the start text of stop rule ``stop``;
    record (h, c) per character.

    ``lstm`` may be passed to reuse a kernel already built from ``art``'s weights.
    """
    lstm = lstm or NumpyLSTM(art.weights, art.model_config)
    vocab = art.vocab
    encoded = vocab.encode(text)
    ids = np.asarray(encoded.ids, dtype=np.intp)
    n_layers, hid = art.model_config.n_layers, art.model_config.hidden
    hidden = [np.empty((len(ids), hid), np.float32) for _ in range(n_layers)]
    cell = [np.empty((len(ids), hid), np.float32) for _ in range(n_layers)]
    state = lstm.start_state(1)
    step = np.zeros(1, dtype=np.intp)
    for i in vocab.encode(start_text(stop)).ids:  # the sampler's start, not recorded
        step[0] = i
        lstm.step_columns(step, state)
    for t, i in enumerate(ids):
        step[0] = i
        lstm.step_columns(step, state)
        for layer in range(n_layers):  # the kernel updates state in place: copy now
            hidden[layer][t] = state.h(layer)[:, 0]
            cell[layer][t] = state.c[layer][:, 0]
    return Activations(text=vocab.decode(ids), hidden=hidden, cell=cell,
                       dropped=encoded.dropped)
