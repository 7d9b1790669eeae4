"""Which model version a style's worker serves, and switching versions safely.

At start-up the loop serves the active version (``registry.active_path``). If that
version does not load (NaN weights, a corrupt file) or the ACTIVE marker cannot be read,
it serves the newest version that loads (``registry.candidates``) and logs one warning.
Every ``poll_s`` it looks again; a new active version is loaded in a background thread
and switched to, while a broken marker, a version that does not load, or a file system
error (EMFILE) keeps the loaded version, with one warning while the problem lasts.

    python -m pytest tests/serving/test_engine_resilience.py -q
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from genmodels.registry import (
    MarkerError,
    active_path,
    candidates,
    stamp as fingerprint,  # the one "changed on disk" rule
)
from serving.client import ModelUnavailable

if TYPE_CHECKING:  # for annotations only: engine.StyleWorker supplies the objects
    from serving.batch import Batch
    from serving.engine_stats import OnceLog, Stats

log = logging.getLogger("serving.engine")


def _fingerprint_or_why(path: Path) -> tuple:
    try:
        return fingerprint(path)
    except Exception as exc:  # noqa: BLE001 - still load it; the next good poll reloads it
        return ("unreadable", str(exc))


class Versions:
    """The version half of ``engine.StyleWorker``: it provides ``_load(path) -> Batch``,
    ``_cond``, ``_batches``, ``stats``, ``style`` and ``_said`` (a ``OnceLog``)."""

    _pinned: Path | None  # a fixed artifact folder (tests, benches); else the registry
    _shipped: Path | None  # where shipped models live (models/); None: registry.SHIPPED
    style: str
    stats: Stats
    _said: OnceLog
    _cond: threading.Condition
    _batches: list[Batch]

    def _load(self, path: Path) -> Batch:
        raise NotImplementedError  # engine.StyleWorker's

    def _warn(self, topic: str, line: str) -> None:
        """One warning while this problem lasts (the engine's ``OnceLog``)."""
        self._said.say(f"{self.style}/{topic}", logging.WARNING, f"{self.style}: {line}")

    def _path(self) -> Path:
        return self._pinned or active_path(self.style, self._shipped)

    @property
    def version(self) -> str:
        return self._batches[-1].version

    @property
    def vocab_size(self) -> int:
        return len(self._batches[-1].chars)

    def _load_first(self):
        """The active version's batch, or the newest one that loads (one warning);
        ``ModelUnavailable`` when none does."""
        self._loading = False
        path, self._fp = None, ("unreadable",)
        try:  # anything may fail here (a broken marker, EMFILE): then try the others
            path = self._path()
            self._fp = _fingerprint_or_why(path)  # a poll reloads only if this changes
            return self._load(path)
        except Exception as exc:  # noqa: BLE001
            problem = str(exc)
        for other in [] if self._pinned else candidates(self.style, self._shipped):
            if other == path:
                continue
            try:
                batch = self._load(other)
            except Exception:  # noqa: BLE001 - not this one either
                continue
            self._warn("load", f"{problem}; serving {batch.version} ({other}) instead")
            return batch
        self._warn("load", problem)
        raise ModelUnavailable(f"the {self.style} model is unavailable")

    def reload(self, wait: bool = False) -> None:
        """Load the active artifact in the background if it changed; ``wait`` blocks."""
        try:
            fp = fingerprint(self._path())
        except (MarkerError, OSError) as exc:  # keep serving; say so once
            self._warn("marker", f"cannot read the active version ({exc}); "
                       f"still serving {self.version}")
            return
        self._said.clear(f"{self.style}/marker")
        if fp == self._fp or self._loading:
            return
        self._loading = True
        t = threading.Thread(target=self._background_load, args=(fp,), daemon=True,
                             name=f"reload-{self.style}")
        t.start()
        if wait:
            t.join()

    def _background_load(self, fp: tuple) -> None:
        try:
            batch = self._load(Path(fp[0]))
        except Exception as exc:  # noqa: BLE001 - keep serving the old version; say why
            batch = None
            self._warn("load", f"cannot load {fp[0]}, still serving {self.version}: {exc}")
        with self._cond:
            self._fp = fp  # not retried until the active version changes again
            was = self.version
            if batch is not None:
                self._batches.append(batch)
                self.stats.reloads += 1
                self._cond.notify()
            self._loading = False
        if batch is not None:
            self._said.clear(f"{self.style}/load")
            log.info("%s: now serving %s (was %s)", self.style, batch.version, was)
