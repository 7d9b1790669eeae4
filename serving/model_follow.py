"""The database pointer every inference process follows when versions live in a store.

With ``[store] url`` naming an object store (genmodels/store.py), the active version of
each style is the ``model_versions`` row whose status is active (storage/versions.py),
not a marker on the trainer's disk. ``install`` makes this process follow those rows:
``genmodels.registry.active_artifact`` (the neuron pictures) and the engine's style
workers (serving/engine_versions.py) ask ``pointer(style)`` and fetch what it names into
the local cache. This is the glue between the two packages that may not import each
other: the model code knows no database, storage knows no artifacts.

With no store configured nothing is installed: one machine follows the ACTIVE marker,
which promotion keeps in step with the database (training/registry_ops.py).

    from serving.model_follow import install
    install()   # True: following the database's active versions
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from genmodels import registry
from genmodels.store import Store, open_store

if TYPE_CHECKING:  # a service with no object store never needs SQLAlchemy loaded
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_lock = threading.Lock()
_installed: bool | None = None  # None: not decided yet in this process


def database_pointers(sessions: sessionmaker[Session]) -> registry.PointerSource:
    """``style -> Pointer | None``: the style's active row, read in its own transaction."""
    from storage.versions import active_model_version

    def pointer(style: str) -> registry.Pointer | None:
        with sessions.begin() as s:
            row = active_model_version(s, style)
            if row is None:
                return None
            return registry.Pointer(row.style, row.version, row.artifact_path, row.sha256)

    return pointer


def follow_database(sessions: sessionmaker[Session], store: Store) -> None:
    """Make this process serve the database's active versions, fetched from ``store``."""
    registry.follow(database_pointers(sessions), store)


def install(config: str | Path | None = None) -> bool:
    """Follow the database when config.toml (or ``MODEL_STORE_URL``) names an object
    store; decided once per process (or already followed: ``follow_database``). False:
    the marker decides, as on one machine."""
    global _installed
    with _lock:
        if _installed is None and not registry.following():
            store = open_store(config)
            _installed = store.remote
            if store.remote:
                from storage.engine import database_url, make_engine, session_factory

                url = database_url(config=Path(config) if config else None)
                follow_database(session_factory(make_engine(url)), store)
                log.info("following the database's active versions (model store %s)",
                         getattr(store, "bucket", "?"))
        return registry.following()


def reset() -> None:
    """Forget the decision (tests that switch stores within one process)."""
    global _installed
    with _lock:
        _installed = None
        registry.follow(None)
