"""A trained model over a wider vocabulary: what a corpus edit that adds characters needs.

A model can only read and write the characters of its vocabulary. When a style's corpus
gains one it has never seen (an em dash, a new name's letter), the nightly fine-tune
cannot start from the active version as it is, and the gate cannot score that version on
the new held-out text. ``widen(artifact, chars)`` gives the same model over the sorted
union of both character sets:

* a new character reads as a zero embedding row (it adds nothing to layer 0's input);
* it is written with a constant logit ``NEW_CHAR_GAP`` nats below the lowest output bias
  of the known characters (a zero column in the output kernel), so it stays rare but has
  a finite loss;
* every known character keeps its weights under its new id, so on text of known
  characters the widened model computes the same logits as before.

Training from the active version (``python -m training train --init``) widens it before
the fine-tune; ``python -m training evaluate --widen-vocab`` scores it the same way, so
the gate compares the candidate with exactly the model it started from.

    wide = widen(artifact.load("models/austen"), "\u2014")   # the vocabulary now has an em dash
"""
from __future__ import annotations

import dataclasses

import numpy as np

from genmodels.artifact import Artifact
from genmodels.vocab import Vocabulary

NEW_CHAR_GAP = 5.0  # nats below the least likely known character's output bias


def missing(art: Artifact, chars: str) -> str:
    """The characters of ``chars`` that ``art``'s vocabulary lacks, sorted."""
    return "".join(sorted(set(chars) - set(art.vocab.chars)))


def widen(art: Artifact, chars: str) -> Artifact:
    """``art`` over its vocabulary plus ``chars`` (the same object if none is new)."""
    new = missing(art, chars)
    if not new:
        return art
    vocab = Vocabulary(sorted(set(art.vocab.chars) | set(new)))
    old_ids = np.array([vocab.index[ch] for ch in art.vocab.chars])
    w = art.weights
    embedding = np.zeros((len(vocab), w["embedding"].shape[1]), np.float32)
    embedding[old_ids] = w["embedding"]
    kernel = np.zeros((w["dense/kernel"].shape[0], len(vocab)), np.float32)
    kernel[:, old_ids] = w["dense/kernel"]
    bias = np.full(len(vocab), float(w["dense/bias"].min()) - NEW_CHAR_GAP, np.float32)
    bias[old_ids] = w["dense/bias"]
    weights = w | {"embedding": embedding, "dense/kernel": kernel, "dense/bias": bias}
    return dataclasses.replace(  # path=None: these weights are not the folder's
        art, vocab=vocab, weights=weights, path=None,
        model_config=dataclasses.replace(art.model_config, vocab_size=len(vocab)))
