"""Where each style's active model lives on disk: the contract between retraining and serving.

Shipped models sit in ``models/STYLE/`` (an artifact folder, committed). Retraining
(issue 6) publishes new versions under ``var/models/STYLE/VERSION/`` and activates one by
atomically replacing the marker file ``var/models/STYLE/ACTIVE`` (its text is the
version folder name). Serving (issue 5) calls ``active_path`` and reloads when the
answer changes; without a marker, or when it names a missing folder, the shipped model
is served.

    python -c "from genmodels.registry import active_path; print(active_path('austen'))"
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models"
MARKER = "ACTIVE"


def registry_root() -> Path:
    """``$MODEL_REGISTRY`` or ``var/models`` (git-ignored)."""
    return Path(os.environ.get("MODEL_REGISTRY") or ROOT / "var" / "models")


def active_path(style: str, shipped: Path | None = None, root: Path | None = None) -> Path:
    """The artifact folder to serve for ``style`` now."""
    root = root or registry_root()
    marker = root / style / MARKER
    try:
        name = marker.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        name = ""
    if name and "/" not in name and (root / style / name / "model.json").is_file():
        return root / style / name
    return (shipped or SHIPPED) / style


def activate(style: str, version: str, root: Path | None = None) -> Path:
    """Point the marker at ``var/models/STYLE/VERSION`` (write temp, then rename)."""
    root = root or registry_root()
    folder = root / style / version
    if not (folder / "model.json").is_file():
        raise FileNotFoundError(f"{folder}: no model.json, cannot activate")
    tmp = root / style / f".{MARKER}.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, root / style / MARKER)
    return folder
