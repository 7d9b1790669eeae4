"""Where published model versions live: this machine's registry, or an S3 object store.

With ``[store] url = ""`` (the default) a version stays where retraining published it,
``var/models/STYLE/VERSION`` (``LocalStore``): one machine, nothing to set up. With
``url = "s3://BUCKET/PREFIX"`` (``MODEL_STORE_URL`` wins) every version is uploaded to
``PREFIX/STYLE/VERSION/FILE`` through the S3 API (``S3Store``: AWS, MinIO, any
S3-compatible server at ``endpoint_url``), so an inference process on any machine can
serve it. Credentials come only from the environment (boto3's chain:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``...), never from config.toml.

A version is downloaded once per machine into ``var/cache/models/VERSION`` (``fetch``),
checked against the ``digest`` recorded when it was published (the ``model_versions``
row's ``sha256``) and renamed into place only when it matches and loads (no NaN or inf
weights), so a half-downloaded, corrupted or swapped copy is never served.

    store = open_store()                    # from config.toml [store]
    where = store.publish(folder, "austen", version)   # -> location for the DB row
    path = store.fetch(where, sha256)       # a local folder holding that version
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from settings import ROOT

META = "model.json"  # genmodels.artifact.META_FILE (not imported: that pulls in NumPy)
CHUNK = 1 << 20


class StoreError(Exception):
    """A version could not be published or fetched; the message says which and why."""


def digest(folder: Path) -> str:
    """The sha256 of an artifact folder: of one line per file (its sha256 and name),
    sorted by name. Hidden files (a ``.tmp``) are left out."""
    lines = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            h = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    h.update(block)
            lines.append(f"{h.hexdigest()}  {path.name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _check(folder: Path, sha256: str | None, where: str) -> None:
    """Refuse a folder whose digest is not the recorded one, or that does not load."""
    from genmodels import artifact  # NumPy only when a version is checked

    if sha256 is not None and (found := digest(folder)) != sha256:
        raise StoreError(f"{where}: sha256 {found[:12]}... is not the recorded "
                         f"{sha256[:12]}...; refusing this copy")
    try:
        artifact.load(folder)
    except artifact.ArtifactError as exc:
        raise StoreError(f"{where}: {exc}") from None


class Store(Protocol):
    remote: bool  # versions live elsewhere and are fetched into a cache

    def publish(self, folder: Path, style: str, version: str) -> str: ...
    def has(self, location: str) -> bool: ...
    def fetch(self, location: str, sha256: str | None = None) -> Path: ...


@dataclass
class LocalStore:
    """The versions are the registry folders themselves (``var/models``)."""

    remote = False

    def publish(self, folder: Path, style: str, version: str) -> str:
        return str(folder)

    def has(self, location: str) -> bool:
        return (Path(location) / META).is_file()

    def fetch(self, location: str, sha256: str | None = None) -> Path:
        """The folder itself, checked against ``sha256`` when one was recorded."""
        path = Path(location)
        if sha256 is not None:
            _check(path, sha256, location)
        return path


class S3Store:
    """Versions under ``s3://BUCKET/PREFIX/STYLE/VERSION/``, fetched into ``cache``."""

    remote = True

    def __init__(self, url: str, *, endpoint_url: str = "", region: str = "",
                 cache: Path | None = None, client: Any = None):
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"store url {url!r}: expected s3://BUCKET/PREFIX")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.cache = cache or default_cache()
        self.client = client or _client(endpoint_url, region)

    def location(self, style: str, version: str) -> str:
        key = "/".join(p for p in (self.prefix, style, version) if p)
        return f"s3://{self.bucket}/{key}"

    def _key(self, location: str) -> str:
        parts = urlsplit(location)
        if parts.scheme != "s3" or parts.netloc != self.bucket:
            raise StoreError(f"{location}: not in this store (s3://{self.bucket})")
        return parts.path.strip("/")

    def publish(self, folder: Path, style: str, version: str) -> str:
        """Upload every file of ``folder``; model.json last, so a version whose
        model.json is there is complete (``has``)."""
        where = self.location(style, version)
        key = self._key(where)
        files = sorted((p for p in folder.iterdir()
                        if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: (p.name == META, p.name))
        try:
            for path in files:
                self.client.upload_file(str(path), self.bucket, f"{key}/{path.name}")
        except Exception as exc:  # noqa: BLE001 - boto3's errors share no useful base
            raise StoreError(f"{where}: upload failed ({_one_line(exc)})") from None
        return where

    def has(self, location: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=f"{self._key(location)}/{META}")
        except Exception:  # noqa: BLE001 - missing, or the store unreachable: not here
            return False
        return True

    def fetch(self, location: str, sha256: str | None = None) -> Path:
        """``cache/VERSION``: downloaded once, checked, renamed into place; a cached copy
        that no longer matches ``sha256`` is downloaded again."""
        key = self._key(location)
        target = self.cache / key.rsplit("/", 1)[-1]
        if target.is_dir():
            try:
                _check(target, sha256, str(target))
                return target
            except StoreError:  # damaged on this disk: fetch a fresh copy
                shutil.rmtree(target, ignore_errors=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=self.cache))
        try:
            self._download(key, tmp, location)
            _check(tmp, sha256, location)
            try:
                os.replace(tmp, target)
            except OSError:  # another process put the same version there first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _download(self, key: str, into: Path, location: str) -> None:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{key}/")
            names = [obj["Key"] for page in pages for obj in page.get("Contents", ())]
            for name in names:
                leaf = name[len(key) + 1:]
                if leaf and "/" not in leaf and not leaf.startswith("."):
                    self.client.download_file(self.bucket, name, str(into / leaf))
        except Exception as exc:  # noqa: BLE001 - boto3's errors share no useful base
            raise StoreError(f"{location}: download failed ({_one_line(exc)})") from None
        if not (into / META).is_file():
            raise StoreError(f"{location}: no {META} in the store")


def _client(endpoint_url: str, region: str) -> Any:
    import boto3  # type: ignore[import-untyped]  # only when a store is configured
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                        config=Config(connect_timeout=5, read_timeout=30,
                                      retries={"max_attempts": 3, "mode": "standard"}))


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def default_cache() -> Path:
    return Path(os.environ.get("MODEL_CACHE") or ROOT / "var" / "cache" / "models")


def open_store(config: str | Path | None = None, env: dict[str, str] | None = None) -> Store:
    """The store config.toml's ``[store]`` names (``MODEL_STORE_URL`` and
    ``MODEL_CACHE`` in the environment win); ``LocalStore`` when none is."""
    import settings  # the config file only when a store is asked for

    environ = os.environ if env is None else env
    cfg = settings.load(config).store
    url = environ.get("MODEL_STORE_URL") or cfg.url
    if not url:
        return LocalStore()
    base = settings.config_path(config).parent
    cache = environ.get("MODEL_CACHE") or cfg.cache
    key = (url, cfg.endpoint_url, cfg.region, str(base / cache) if cache else "")
    with _opened_lock:  # a boto3 client takes a while to make: one per store
        if key not in _opened:
            _opened[key] = S3Store(url, endpoint_url=cfg.endpoint_url, region=cfg.region,
                                   cache=(base / cache) if cache else None)
        return _opened[key]


_opened: dict[tuple, S3Store] = {}
_opened_lock = threading.Lock()
