"""The ``[inference]`` table of config.toml: what the engine, the service and the bot's
choice of client (``bot.wiring.make_client``) share.

    python -c "from serving.config import inference_settings; print(inference_settings())"
"""
from __future__ import annotations

from pathlib import Path

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
    return settings.given(table)
