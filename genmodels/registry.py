"""Where each style's active model lives on disk: the contract between retraining and serving.

Shipped models sit in ``models/STYLE/`` (an artifact folder, committed). Retraining
(``training/retrain.py``) publishes new versions under ``var/models/STYLE/VERSION/`` and
activates one by atomically replacing the marker file ``var/models/STYLE/ACTIVE`` (its
text is the version folder name), so a reader sees the old version or the new one, never
half of one. Serving (``serving/engine.py``) calls ``active_path`` and reloads when the
answer changes; without a marker, or when it names a missing folder, the shipped model
is served. A marker that cannot be read (not UTF-8, a folder) raises ``MarkerError``;
``candidates`` lists every version to fall back to, newest first.

``load`` and ``active_artifact`` are the one cache of loaded artifacts: the engine's
style workers and the neuron pictures share it, so a process holds a served model once, and
``stamp`` is the one rule for "this folder changed since it was loaded".

On more than one machine (``[store] url`` names an object store, genmodels/store.py) the
truth is the database's active row of each style, not a marker on one disk: the process
calls ``follow`` with a source of ``Pointer``s (serving/model_follow.py reads them from
the database; this package imports no storage code) and ``active_artifact`` and the
engine serve what it names, fetched once into the local cache and checked.

    python -c "from genmodels.registry import active_path; print(active_path('austen'))"
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from settings import ROOT

if TYPE_CHECKING:  # annotations only: loading artifacts needs NumPy, imported when used
    from genmodels.artifact import Artifact
    from genmodels.store import Store

SHIPPED = ROOT / "models"
MARKER = "ACTIVE"
META = "model.json"  # genmodels.artifact.META_FILE (not imported: that pulls in NumPy)


class MarkerError(ValueError):
    """The ACTIVE marker exists but cannot be read; the message names the file."""


def registry_root() -> Path:
    """``$MODEL_REGISTRY`` or ``var/models`` (git-ignored)."""
    return Path(os.environ.get("MODEL_REGISTRY") or ROOT / "var" / "models")


def read_marker(style: str, root: Path | None = None) -> str:
    """The version the marker names ("" without a marker); ``MarkerError`` if broken."""
    marker = (root or registry_root()) / style / MARKER
    try:
        return marker.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise MarkerError(f"{marker}: unreadable marker ({type(exc).__name__})") from None


def active_path(style: str, shipped: Path | None = None, root: Path | None = None) -> Path:
    """The artifact folder to serve for ``style`` now."""
    root = root or registry_root()
    name = read_marker(style, root)
    if name and "/" not in name and (root / style / name / META).is_file():
        return root / style / name
    return (shipped or SHIPPED) / style


def candidates(style: str, shipped: Path | None = None,
               root: Path | None = None) -> list[Path]:
    """Every folder that may hold a model for ``style``: the registry's versions, newest
    first (by their model.json's time), then the shipped one. Unchecked: load to see."""
    folder = (root or registry_root()) / style
    found = []
    try:
        for path in folder.iterdir():
            try:
                if not path.name.startswith(".") and (path / META).is_file():
                    found.append(((path / META).stat().st_mtime_ns, path))
            except OSError:  # vanished or unreadable meanwhile: not a candidate
                continue
    except OSError:  # no registry folder for this style
        pass
    return [p for _, p in sorted(found, reverse=True)] + [(shipped or SHIPPED) / style]


def activate(style: str, version: str, root: Path | None = None) -> Path:
    """Point the marker at ``var/models/STYLE/VERSION`` (write temp, then rename).

    The version is loaded first: a corrupt one (``ArtifactError``: bad JSON, NaN or inf
    weights) is refused and the marker keeps pointing at what it pointed at.
    """
    root = root or registry_root()
    folder = root / style / version
    if not (folder / META).is_file():
        raise FileNotFoundError(f"{folder}: no model.json, cannot activate")
    from genmodels import artifact  # NumPy only when promoting: importing this stays light

    artifact.load(folder)
    tmp = root / style / f".{MARKER}.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, root / style / MARKER)
    return folder


def stamp(path: Path) -> tuple:
    """What identifies an artifact folder's contents without reading them: the path and
    model.json's inode, mtime and size (a republished artifact is a new file). Without
    model.json: (path, None, None, None); other OSErrors (EMFILE) propagate."""
    try:
        st = (path / META).stat()
    except (FileNotFoundError, NotADirectoryError):
        return (str(path), None, None, None)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


# style -> (stamp, artifact) of its latest load: one per style, so a version that is
# no longer served is freed once its last user lets go of it.
_loaded: dict[str, tuple[tuple, Artifact]] = {}
_loaded_lock = threading.Lock()


def load(path: Path) -> Artifact:
    """``artifact.load(path)``, shared while the folder's ``stamp`` is unchanged.

    Raises ``ArtifactError`` (a one-line message) for a missing or corrupt artifact.
    """
    from genmodels import artifact  # NumPy only when loading: importing this stays light

    try:
        now = stamp(path)
    except OSError:  # unreadable just now (EMFILE): uncached; load names the problem
        return artifact.load(path)
    with _loaded_lock:
        hit = next((art for seen, art in _loaded.values() if seen == now), None)
    if hit is not None and now[1] is not None:
        return hit
    art = artifact.load(path)  # outside the lock: styles load in parallel
    with _loaded_lock:
        _loaded[art.style] = (now, art)
    return art


@dataclass(frozen=True)
class Pointer:
    """A style's active version as the database names it, and where the store keeps it."""

    style: str
    version: str
    location: str  # a folder, or "s3://..." (genmodels/store.py)
    sha256: str | None  # recorded at publication; None: not checked


PointerSource = Callable[[str], "Pointer | None"]  # style -> its active version, if any
_follow: tuple[PointerSource, Store] | None = None


def follow(source: PointerSource | None, store: Store | None = None) -> None:
    """Serve what ``source`` names (fetched from ``store``) instead of the marker;
    ``follow(None)`` goes back to the marker. Once per process, before serving."""
    global _follow
    if source is None:
        _follow = None
        return
    if store is None:
        raise ValueError("follow(source) needs the store the versions are fetched from")
    _follow = (source, store)


def following() -> bool:
    """Whether ``follow`` installed a source (the database decides, not the marker)."""
    return _follow is not None


def pointer(style: str) -> Pointer | None:
    """The database's active version of ``style`` when ``follow`` was called, else None
    (then the marker decides). Whatever the source raises (a database down) propagates."""
    return None if _follow is None else _follow[0](style)


def fetch(target: Pointer) -> Path:
    """A local folder holding ``target``: downloaded once and checked against its sha256
    (``StoreError`` if it cannot be fetched, does not match or does not load)."""
    if _follow is None:
        raise RuntimeError("fetch needs follow(source, store) first")
    return _follow[1].fetch(target.location, target.sha256)


def active_artifact(style: str, shipped: Path | None = None) -> Artifact:
    """The artifact ``style`` serves now (the followed pointer, else the registry marker
    or shipped), cached until its folder changes (``load``). Raises ``ArtifactError`` if
    there is none or its version cannot be fetched."""
    from genmodels.artifact import ArtifactError  # NumPy: loading needs it anyway
    from genmodels.store import StoreError

    try:
        target = pointer(style)
        if target is not None:
            return load(fetch(target))
    except (ArtifactError, StoreError) as exc:
        raise ArtifactError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the pointer's source failed (database down)
        raise ArtifactError(f"cannot read the active version of {style}: {exc}") from None
    return load(active_path(style, shipped))
