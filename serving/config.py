"""The ``[inference]`` table of config.toml: what the engine, the service and the bot's
choice of client (``bot.wiring.make_client``) share.

``url`` (one service) and ``urls`` (replicas) are one setting: the returned ``"urls"``
is the list the client balances over, ``[url]`` when only ``url`` is set, and empty for
the in-process engine. Setting both, or a value that is not an http(s) URL with a host,
is refused with one line naming the key.

    python -c "from serving.config import inference_settings; print(inference_settings())"
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import settings
from genmodels.blas_threads import check_setting
from settings import ConfigError, schema

# The defaults live in the schema (settings/schema.py), with every key's type.
INFERENCE_DEFAULTS = settings.given(schema.Inference())


def inference_settings(path: str | Path | None = None) -> dict:
    """The ``[inference]`` table of config.toml over the defaults (keys and types checked
    by the ``settings`` package; an absent file is every default)."""
    table = settings.load(path, missing_ok=True).inference
    try:
        check_setting(table.blas_threads)  # "auto" or a positive thread count
    except ValueError as exc:
        raise ConfigError(f"inference.{exc}") from None
    return {**settings.given(table), "urls": service_urls(table)}


def service_urls(table: schema.Inference) -> list[str]:
    """The services the HTTP client uses (empty: the engine in this process)."""
    if table.url and table.urls:
        raise ConfigError("inference: set url (one service) or urls (replicas), not both")
    if table.url:
        return [_checked("inference.url", table.url)]
    urls = [_checked(f"inference.urls[{i}]", url) for i, url in enumerate(table.urls)]
    if len(set(urls)) < len(urls):
        raise ConfigError("inference.urls: a replica is listed twice")
    return urls


def _checked(key: str, url: str) -> str:
    """``url`` without a trailing slash; ``ConfigError`` unless http(s)://HOST[:PORT][/path]."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or url != url.strip()):
        raise ConfigError(f"{key}: must be an http:// or https:// URL with a host, "
                          f"got {url!r}")
    return url.rstrip("/")
