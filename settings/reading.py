"""Reading config.toml once per process into the frozen ``schema.Config``.

``load(path)`` parses the file (``$BOT_CONFIG`` or the repository's copy) the first
time and returns the same decoded object afterwards. The cache is keyed on the resolved
path and checked against the file's size, modification time and inode, so a file
rewritten in place (tests do this) is parsed again, and two paths are two entries.
"""
from __future__ import annotations

import copy
import os
import threading
import time
import tomllib
from pathlib import Path
from typing import NamedTuple

import msgspec

from settings.errors import ConfigError, from_validation
from settings.schema import Config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config.toml"

# A file changed this recently may change again within one tick of the file system's
# clock, keeping its size and mtime: its bytes are compared too (as git does).
_RACY_NS = 2_000_000_000


class _Entry(NamedTuple):
    stamp: tuple[int, int, int]  # size, mtime_ns, inode
    data: bytes
    doc: dict
    config: Config


_lock = threading.Lock()
_cache: dict[Path, _Entry] = {}  # by resolved path


def config_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$BOT_CONFIG``, else the repository's config.toml."""
    return Path(path or os.environ.get("BOT_CONFIG") or DEFAULT_CONFIG)


def load(path: str | Path | None = None, missing_ok: bool = False) -> Config:
    """The decoded config; ``ConfigError`` names the key at fault.

    ``missing_ok``: an absent file is every default (for readers whose tables are all
    optional: the database URL, the bandit, the inference client).
    """
    return _entry(config_path(path), missing_ok)[1]


def read_document(path: str | Path | None = None) -> tuple[Path, dict]:
    """The file's path and its parsed (and checked) tables, as plain dicts (a copy)."""
    path = config_path(path)
    return path, copy.deepcopy(_entry(path, False)[0])


def decode(doc: dict) -> Config:
    """A parsed TOML document (or a dict written in a test) as a checked ``Config``."""
    try:
        return msgspec.convert(doc, Config)
    except msgspec.ValidationError as exc:
        raise from_validation(exc, doc, Config) from None


def _entry(path: Path, missing_ok: bool) -> tuple[dict, Config]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        if missing_ok:
            return {}, Config()
        raise ConfigError(f"{path}: config file not found") from None
    stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    racy = time.time_ns() - stat.st_mtime_ns < _RACY_NS
    key = path.resolve()
    with _lock:
        cached = _cache.get(key)
        data = _read(path) if cached is None or cached.stamp != stamp or racy else cached.data
        if cached is None or cached.data != data:
            doc = _parse(path, data)
            cached = _Entry(stamp, data, doc, decode(doc))
        _cache[key] = cached._replace(stamp=stamp)  # a touched file: same bytes, new stamp
    return cached.doc, cached.config


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _parse(path: Path, data: bytes) -> dict:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
