"""Character n-gram baseline: interpolated modified Kneser-Ney (Chen & Goodman 1998).

The number an LSTM's held-out loss should beat. ``baseline`` trains on exactly the ids
the LSTM trains on (``train.u16`` of ``training.corpus.prepare``, with the same lines
excluded as ``training/train.py`` excludes) and scores exactly the held-out ids that
``python -m training evaluate`` scores, in nats/char.

    python -m training baseline STYLE [--orders 3-8]   # last line: baseline_nats=<f> order=<n>

The model, for an order N and a history h of the N-1 preceding chars:

    P_n(w | h) = (c_n(hw) - D_n(c_n(hw))) / c_n(h.) + gamma_n(h) P_{n-1}(w | h')
    gamma_n(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c_n(h.)
    P_0(w)     = 1 / V

``c_N`` are raw counts; a lower order n < N counts continuations instead,
``c_n(hw) = N1+(. h w)``: the number of distinct chars seen before ``hw``. Each order has
three discounts from its count-of-counts n1..n4: ``Y = n1 / (n1 + 2 n2)``,
``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3`` (when n1, n2 or n3 is
zero, as in a tiny corpus, KenLM's fallback 0.5, 1, 1.5; every discount is kept in
[0.01, k] so no distribution loses its tail). A history never seen in training backs off
wholly to the order below. Held-out text is scored on its own: its first chars have
shorter histories (the order below), it borrows no context from the training text.

Everything is vectorised NumPy. The n-grams of order n get ids level by level: the key
of an n-gram is ``id(its first n-1 chars) * V + last char``, so keys stay below
(number of distinct (n-1)-grams) * V whatever the order and the vocabulary size; counts
come from ``np.unique`` and held-out look-ups from ``np.searchsorted``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback
MIN_DISCOUNT = 0.01
DEFAULT_ORDERS = range(3, 9)
MAX_ORDER = 16
CACHE_VERSION = 1  # bump when the model changes: old cached numbers are then ignored


def discounts(counts: np.ndarray) -> np.ndarray:
    """``[0, D1, D2, D3+]`` for n-gram types with these counts (zeros are ignored)."""
    n1, n2, n3, n4 = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(float)
    if min(n1, n2, n3) == 0:
        d = np.array(FALLBACK_DISCOUNTS)
    else:
        y = n1 / (n1 + 2 * n2)
        d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    return np.concatenate([[0.0], np.clip(d, MIN_DISCOUNT, [1, 2, 3])])


class Table:
    """The distinct n-grams of one order: sorted keys with raw and continuation counts."""

    def __init__(self, keys: np.ndarray, raw: np.ndarray, n_contexts: int, vocab_size: int):
        self.keys, self.raw, self.n_contexts = keys, raw, n_contexts
        self.vocab_size = vocab_size
        self.continuation: np.ndarray | None = None  # set once the order above is counted

    def lookup(self, contexts: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """Ids of the n-grams (context id, char); -1 where unseen or the context is -1."""
        keys = contexts * self.vocab_size + chars
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where((contexts >= 0) & (self.keys[at] == keys), at, -1)


def count_tables(train: np.ndarray, vocab_size: int, order: int) -> list[Table]:
    """Tables for orders 1..order of ``train``; continuation counts up to order-1."""
    chars = np.asarray(train, dtype=np.int64)
    if len(chars) < order:
        raise ValueError(f"{len(chars)} training chars are too few for order {order}")
    tables: list[Table] = []
    prev = np.zeros(len(chars) + 1, dtype=np.int64)  # id of the empty gram before each char
    for n in range(1, order + 1):
        # prev[j]: id of the (n-1)-gram ending at char n-2+j; the n-gram ending at char
        # n-1+j is that context plus the char; its last n-1 chars are the gram prev[j+1].
        keys, first, inverse, counts = np.unique(
            prev[:-1] * vocab_size + chars[n - 1:], return_index=True,
            return_inverse=True, return_counts=True)
        if tables:
            below = tables[-1]
            below.continuation = np.bincount(prev[1:][first], minlength=len(below.keys))
        tables.append(Table(keys, counts, len(tables[-1].keys) if tables else 1, vocab_size))
        prev = inverse.reshape(-1)
    return tables


def _continuation(table: Table) -> np.ndarray:
    """The continuation counts of an order below the top (count_tables counted them)."""
    if table.continuation is None:
        raise ValueError("continuation counts of the top order do not exist")
    return table.continuation


class Level:
    """One order's share of the interpolated distribution, for raw or continuation counts."""

    def __init__(self, table: Table, counts: np.ndarray):
        d = discounts(counts)
        cut = d[np.minimum(counts, 3)]
        contexts = table.keys // table.vocab_size
        self.table = table
        self.kept = counts - cut  # >= 0: D_k <= k
        self.total = np.bincount(contexts, weights=counts, minlength=table.n_contexts)
        spare = np.bincount(contexts, weights=cut, minlength=table.n_contexts)
        self.gamma = np.divide(spare, self.total, out=np.zeros_like(spare),
                               where=self.total > 0)
        self.discounts = d[1:]

    def apply(self, contexts: np.ndarray, grams: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P_n from P_{n-1} (``lower``); contexts -1 or unseen keep ``lower``."""
        ctx = np.maximum(contexts, 0)
        total = np.where(contexts >= 0, self.total[ctx], 0.0)
        kept = np.where(grams >= 0, self.kept[np.maximum(grams, 0)], 0.0)
        mixed = kept / np.maximum(total, 1) + self.gamma[ctx] * lower
        return np.where(total > 0, mixed, lower)


class KneserNey:
    """Interpolated modified Kneser-Ney models of every order up to ``order`` at once.

    ``nats(heldout, orders)`` scores several orders for the price of the highest: the
    lower orders of an order-N model are the same continuation levels for every N.
    """

    def __init__(self, train: np.ndarray, vocab_size: int, order: int):
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"order must be between 1 and {MAX_ORDER}, not {order}")
        self.order, self.vocab_size = order, vocab_size
        self.tables = count_tables(train, vocab_size, order)
        self.raw = [Level(t, t.raw) for t in self.tables]
        self.continuation = [Level(t, _continuation(t)) for t in self.tables[:-1]]

    def _orders(self, orders) -> list[int]:
        orders = sorted(set(orders if orders is not None else [self.order]))
        if not orders or orders[0] < 1 or orders[-1] > self.order:
            raise ValueError(f"orders must be within 1..{self.order}, not {orders}")
        return orders

    def probabilities(self, ids: np.ndarray, orders=None) -> dict[int, np.ndarray]:
        """P(ids[i] | up to N-1 preceding ids) for every i, per order N."""
        chars = np.asarray(ids, dtype=np.int64)
        if len(chars) and (chars.min() < 0 or chars.max() >= self.vocab_size):
            raise ValueError(f"ids must be in 0..{self.vocab_size - 1}")
        orders, out = self._orders(orders), {}
        p = np.full(len(chars), 1.0 / self.vocab_size)
        contexts = np.zeros(len(chars), dtype=np.int64)  # the empty context, id 0
        for n in range(1, orders[-1] + 1):
            grams = self.tables[n - 1].lookup(contexts, chars)
            if n in orders:
                out[n] = self.raw[n - 1].apply(contexts, grams, p)
            if n < orders[-1]:
                p = self.continuation[n - 1].apply(contexts, grams, p)
                contexts = np.concatenate([[-1], grams[:-1]])  # the n-gram before each char
        return out

    def nats(self, heldout: np.ndarray, orders=None) -> dict[int, float]:
        """Mean nats/char of ``heldout`` per order (its own chars are the histories)."""
        if len(heldout) == 0:
            raise ValueError("no held-out chars to score")
        return {n: float(-np.log(p).mean())
                for n, p in self.probabilities(heldout, orders).items()}

    def distribution(self, context, order: int | None = None) -> np.ndarray:
        """P(w | context) for every id w, from the last order-1 ids of ``context``."""
        order = self._orders([order or self.order])[0]
        context = np.asarray(context, dtype=np.int64)[max(0, len(context) - order + 1):]
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        chars = np.arange(self.vocab_size)
        ctx = np.zeros(len(context) + 1, dtype=np.int64)  # context id of each position
        for n in range(1, len(context) + 2):
            levels = self.raw if n == order else self.continuation
            here = np.full(self.vocab_size, ctx[-1])
            p = levels[n - 1].apply(here, self.tables[n - 1].lookup(here, chars), p)
            if n <= len(context):
                grams = self.tables[n - 1].lookup(ctx[:-1], context)
                ctx = np.concatenate([[-1], grams])
        return p


def _exclude(style, book) -> set[str]:
    """The lines left out of training, built exactly as ``training/train.py`` builds them."""
    from training import corpus as corpora

    exclude: set[str] = set()
    for other in style.exclude_heldout_of:
        exclude |= corpora.heldout_lines(book.get(other).corpus, style.training.val_fraction)
    return exclude


def _cache_file(sha: str, style, exclude: set[str], orders: list[int], cache: Path) -> Path:
    """``ngram-KEY.json``: KEY hashes the corpus, split, exclusions, orders, model."""
    excluded = hashlib.sha256("\0".join(sorted(exclude)).encode()).hexdigest()
    key = "\0".join([sha, repr(style.training.val_fraction), excluded,
                     ",".join(map(str, orders)), f"v{CACHE_VERSION}"])
    return cache / f"ngram-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def cached_baseline(style, book, orders=DEFAULT_ORDERS,
                    cache: Path | None = None) -> dict[int, float] | None:
    """The nats/char per order that ``baseline`` stored for this corpus, or None.

    Never computes a model: it hashes the corpus (and the corpora whose held-out lines
    it excludes) and reads one small JSON file.
    """
    from training import corpus as corpora

    path = _cache_file(corpora.scan(style.corpus)[0], style, _exclude(style, book),
                       sorted(set(orders)), cache or corpora.CACHE)
    try:
        return {int(n): float(v) for n, v in json.loads(path.read_text())["nats"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def best_cached(style, book) -> tuple[float, int] | None:
    """(nats/char, order) of the best cached default order; None when there is no cache
    entry, or no corpus to hash (a base's before it is written, an empty one)."""
    from training.corpus import CorpusError

    try:
        nats = cached_baseline(style, book)
    except (CorpusError, OSError):
        return None
    return min((v, n) for n, v in nats.items()) if nats else None


def baseline(style, book, orders=DEFAULT_ORDERS,
             cache: Path | None = None) -> dict[int, float]:
    """Held-out nats/char of ``style`` per n-gram order; stored for ``cached_baseline``."""
    from genmodels.vocab import Vocabulary
    from training import base_corpus, corpus as corpora

    if style.sources:  # a base model: its corpus is written from its styles' training text
        base_corpus.build(style, book)
    cache = cache or corpora.CACHE
    orders = sorted(set(orders))
    exclude = _exclude(style, book)
    cfg, (sha, _, chars) = style.training, corpora.scan(style.corpus)
    data = corpora.prepare(style.corpus, Vocabulary(chars), cfg.val_fraction, cfg.seq_len,
                           exclude, cache=cache)
    vocab_size = len(chars)
    model = KneserNey(corpora.read_ids(data.train_path), vocab_size, orders[-1])
    nats = model.nats(corpora.read_ids(data.val_path), orders)
    path = _cache_file(sha, style, exclude, orders, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"style": style.name, "sha256": data.sha256, "val_fraction": cfg.val_fraction,
              "excluded_lines": len(exclude), "train_chars": data.train_chars,
              "val_chars": data.val_chars, "vocab_size": vocab_size,
              "nats": {str(n): v for n, v in nats.items()}}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)  # a concurrent reader sees all of it or nothing
    return nats


def parse_orders(text: str) -> list[int]:
    """``"3-8"``, ``"5"`` or ``"2,4,6"`` -> sorted orders within 1..MAX_ORDER."""
    found = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    try:
        if found:
            orders = list(range(int(found[1]), int(found[2]) + 1))
        else:
            orders = [int(part) for part in text.split(",")]
    except ValueError:
        orders = []
    if not orders or not all(1 <= n <= MAX_ORDER for n in orders):
        raise argparse.ArgumentTypeError(
            f"expected orders like 3-8, 5 or 2,4,6 within 1..{MAX_ORDER}, got {text!r}")
    return sorted(set(orders))


def add_parser(sub) -> None:
    """Register ``baseline STYLE [--orders 3-8]`` on ``python -m training``'s subparsers."""
    b = sub.add_parser("baseline", help="held-out nats/char of a Kneser-Ney n-gram model")
    b.add_argument("style")
    b.add_argument("--orders", type=parse_orders, default=list(DEFAULT_ORDERS),
                   help="n-gram orders to score, e.g. 3-8 (default), 5 or 2,4,6")


def run(book, args) -> None:
    """Print each order's held-out nats/char, then ``baseline_nats=<f> order=<n>``."""
    nats = baseline(book.get(args.style), book, args.orders)
    for n, value in nats.items():
        print(f"order {n}: {value:.4f} nats/char")
    best = min(nats, key=nats.__getitem__)
    print(f"baseline_nats={nats[best]:.4f} order={best}")
