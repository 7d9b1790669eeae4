"""Which model version a style's engine loop serves, and switching versions safely.

At start-up the loop serves the active version: the database's active row when the
process follows it (an object store is configured: serving/model_follow.py, fetched
once into the local cache and checked against its sha256), else the ACTIVE marker
(``registry.active_path``). If that version does not load (NaN weights, a corrupt
file, a download that fails or does not match) or the marker cannot be read, it serves
the newest local version that loads (``registry.candidates``) and logs one warning.
Every ``poll_s`` it looks again; a new active version is fetched and loaded in a
background thread and switched to, while a broken marker, an unreachable database, a
version that cannot be fetched or does not load, or a file system error (EMFILE) keeps
the loaded version, with one warning while the problem lasts. A version that failed to
fetch is tried again after ``REFETCH_S`` (a network blip heals; a corrupted object is
not downloaded every poll).

    python -m pytest tests/serving/test_engine_resilience.py -q
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from genmodels import registry
from genmodels.registry import (
    MarkerError,
    Pointer,
    active_path,
    candidates,
    stamp as fingerprint,  # the one "changed on disk" rule
)
from serving import model_follow
from serving.client import ModelUnavailable

if TYPE_CHECKING:  # for annotations only: engine.StyleWorker supplies the objects
    from serving.batch import Batch
    from serving.engine_stats import OnceLog, Stats

log = logging.getLogger("serving.engine")
REFETCH_S = 60.0  # a version that could not be fetched is tried again after this

Target = Path | Pointer  # a folder on this machine, or the database's active version


class PointerUnavailable(Exception):
    """The database's active version could not be read (the database is down)."""


def _fingerprint(target: Target) -> tuple:
    """What identifies the target: the folder's ``stamp``, or the pointer itself (the
    cache is not looked at until the pointer changes)."""
    if isinstance(target, Pointer):
        return ("pointer", target.version, target.location, target.sha256)
    return fingerprint(target)


def _fingerprint_or_why(target: Target) -> tuple:
    try:
        return _fingerprint(target)
    except Exception as exc:  # noqa: BLE001 - still load it; the next good poll reloads it
        return ("unreadable", str(exc))


def _folder(target: Target) -> Path:
    """The local folder of ``target``; a pointer's version is fetched (``StoreError``)."""
    return registry.fetch(target) if isinstance(target, Pointer) else target


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

    def _target(self) -> Target:
        """What to serve now: the pinned folder, the database's active version (when
        this process follows it and the style has one), else the marker's folder."""
        if self._pinned:
            return self._pinned
        if model_follow.install():
            try:
                found = registry.pointer(self.style)
            except Exception as exc:  # noqa: BLE001 - any driver error: keep serving
                raise PointerUnavailable(f"the database did not answer: {exc}") from exc
            if found is not None:
                return found
        return active_path(self.style, self._shipped)

    @property
    def version(self) -> str:
        return self._batches[-1].version

    @property
    def vocab_size(self) -> int:
        return len(self._batches[-1].chars)

    def _load_first(self):
        """The active version's batch, or the newest one that loads (one warning);
        ``ModelUnavailable`` when none does."""
        self._loading, self._failed = False, ((), 0.0)  # (fingerprint, retry after)
        path, self._fp = None, ("unreadable",)
        try:  # anything may fail here (a broken marker, EMFILE): then try the others
            target = self._target()
            self._fp = _fingerprint_or_why(target)  # a poll reloads only if this changes
            path = _folder(target)
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
        """Load the active artifact in the background if it changed; ``wait`` blocks.

        Following the database, even the question is asked off the loop: a slow or
        unreachable database must not hold up the steps."""
        if self._loading:
            return
        if not self._pinned and model_follow.install():
            self._loading = True
            t = threading.Thread(target=self._follow_load, daemon=True,
                                 name=f"follow-{self.style}")
        else:
            changed = self._changed()
            if changed is None:
                return
            self._loading = True
            t = threading.Thread(target=self._background_load, args=changed, daemon=True,
                                 name=f"reload-{self.style}")
        t.start()
        if wait:
            t.join()

    def _changed(self) -> tuple[tuple, Target] | None:
        """(fingerprint, target) of the active version when it is not the loaded one
        (and not one that failed to fetch a moment ago); None: nothing to do."""
        try:
            target = self._target()
            fp = _fingerprint(target)
        except (MarkerError, OSError, PointerUnavailable) as exc:  # keep serving; say once
            self._warn("marker", f"cannot read the active version ({exc}); "
                       f"still serving {self.version}")
            return None
        self._said.clear(f"{self.style}/marker")
        if fp == self._fp or (fp == self._failed[0] and time.monotonic() < self._failed[1]):
            return None
        return fp, target

    def _follow_load(self) -> None:
        try:
            changed = self._changed()
        except Exception as exc:  # noqa: BLE001 - a thread's error would go unseen
            self._warn("marker", f"cannot read the active version ({exc}); "
                       f"still serving {self.version}")
            changed = None
        if changed is None:
            with self._cond:
                self._loading = False
            return
        self._background_load(*changed)

    def _background_load(self, fp: tuple, target: Target) -> None:
        fetched = False
        try:
            batch = self._load(_folder(target))  # a download happens here, off the loop
            fetched = True
        except Exception as exc:  # noqa: BLE001 - keep serving the old version; say why
            batch = None
            what = target.version if isinstance(target, Pointer) else target
            self._warn("load", f"cannot load {what}, still serving {self.version}: {exc}")
        with self._cond:
            if fetched or not isinstance(target, Pointer):
                self._fp = fp  # not retried until the active version changes again
            else:  # a fetch may heal (the network, the store): again after a pause
                self._failed = (fp, time.monotonic() + REFETCH_S)
            was = self.version
            if batch is not None:
                self._batches.append(batch)
                self.stats.reloads += 1
                self._cond.notify()
            self._loading = False
        if batch is not None:
            self._said.clear(f"{self.style}/load")
            log.info("%s: now serving %s (was %s)", self.style, batch.version, was)
