"""The tiny config.toml that the test suite and bench/cluster.py start from: one style
(``tiny``, corpus ``corpora/tiny.txt``) and a model of a few hundred weights that
trains in seconds. Callers append their own sections."""
from __future__ import annotations


def tiny_config(minutes: float, sampling: str = "") -> str:
    """[sampling], [training] with a budget of ``minutes``, [model] and [styles.tiny]
    (open: the caller may add keys to it, then further sections)."""
    return f"""\
[sampling]
temperature = 0.9
{sampling}
[training]
minutes = {minutes}
seq_len = 16
batch_size = 8
learning_rate = 0.01
warmup_steps = 2
steps_per_epoch = 10
patience = 100
weights_dtype = "float32"

[model]
embed_dim = 8
hidden = 16
n_layers = 1

[styles.tiny]
command = "tiny"
corpus = "corpora/tiny.txt"
description = "A tiny test style"
stop = "end_of_line"
default_chars = 40
max_chars = 100
temperature = 0.7
"""
