"""The ``[inference]`` table of config.toml, and (re-exported) the client interface.

``inference_settings()`` reads the table the engine, the service and the bot's choice
of client share. The interface and its errors live in ``genmodels.client`` (a module
that knows no implementation); they are re-exported here for older imports. The client
itself is chosen where the bot is wired (``bot.wiring.make_client``).

    python -c "from genmodels.generation import inference_settings; print(inference_settings())"
"""
from __future__ import annotations

from pathlib import Path

import settings
from genmodels.blas_threads import check_setting
from genmodels.client import Busy, GenerationClient, GenerationError, ModelUnavailable, Result
from settings import ConfigError, schema

__all__ = ["Busy", "GenerationClient", "GenerationError", "ModelUnavailable", "Result",
           "INFERENCE_DEFAULTS", "inference_settings"]


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
