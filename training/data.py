"""tf.data pipeline: fixed-length windows streamed from the uint16 id file on disk.

Each record is ``seq_len + 1`` ids; the input is the first ``seq_len`` and the target
the last ``seq_len`` (every position is a target, unlike the seed recipe's one target
per 60-char window). Each pass over the file starts at a different offset, so window
boundaries move between passes, and a bounded shuffle buffer mixes windows without
reading the corpus into memory.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

_BYTES_PER_ID = 2
_OFFSET_STRIDE = 37  # co-prime with common window lengths: passes start at new places


def train_dataset(path: Path, n_ids: int, seq_len: int, batch_size: int,
                  seed: int, shuffle_buffer: int = 8192) -> tf.data.Dataset:
    """An endless dataset of (inputs, targets) int32 batches of shape (batch, seq_len)."""
    record = seq_len + 1
    max_offset = max(1, min(record, n_ids - record + 1))

    def one_pass(epoch):
        offset = (epoch * _OFFSET_STRIDE) % max_offset
        tail = (n_ids - offset) % record  # the reader insists on whole records
        return tf.data.FixedLengthRecordDataset(
            str(path), record * _BYTES_PER_ID, header_bytes=offset * _BYTES_PER_ID,
            footer_bytes=tail * _BYTES_PER_ID)

    def split(raw):
        ids = tf.cast(tf.io.decode_raw(raw, tf.uint16, little_endian=True), tf.int32)
        return ids[:-1], ids[1:]

    return (tf.data.Dataset.range(2**62).flat_map(one_pass)
            .shuffle(shuffle_buffer, seed=seed)
            .map(split, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))
