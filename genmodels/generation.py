"""The generation client interface the bot uses, and the choice of client.

The chat core only ever calls ``GenerationClient.generate`` / ``versions`` / ``close``;
whether the text comes from the batching engine in this process or from the HTTP
inference service is a configuration choice. Errors a user may see are the
three exceptions below; their messages are short and safe to show.

``make_client()`` picks the client from config.toml's ``[inference]`` table: the
in-process batching engine (``genmodels.engine.EngineClient``, the default) or, when
``url`` is set, the HTTP inference service (``genmodels.http_client.HttpClient``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import settings
from genmodels.blas_threads import check_setting
from genmodels.sampler import Generation, SamplingParams
from settings import ConfigError, schema


class GenerationError(Exception):
    """Generation failed; the message is safe to show to a user."""


class Busy(GenerationError):
    """Too many generations in flight; try again in a moment."""


class ModelUnavailable(GenerationError):
    """The style's model could not be loaded."""


@dataclass(frozen=True)
class Result:
    generation: Generation
    latency_ms: float  # from the call to the last character


class GenerationClient(Protocol):
    async def generate(self, style: str, prime: str, params: SamplingParams) -> Result: ...

    async def versions(self) -> dict[str, str]:
        """Style name -> model version currently served (loaded styles only)."""
        ...

    async def close(self) -> None: ...


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


def make_client(config: str | Path | None = None) -> GenerationClient:
    """The client config.toml asks for: the HTTP service when ``[inference] url`` is set,
    else the in-process batching engine (``genmodels.engine``)."""
    cfg = inference_settings(config)
    if cfg["url"]:
        from genmodels.http_client import HttpClient
        return HttpClient(cfg["url"], timeout_s=float(cfg["timeout_s"]),
                          retries=cfg["retries"], secret=os.environ.get("INFERENCE_SECRET"))
    from genmodels.engine import Engine, EngineClient  # late: engine imports this module
    return EngineClient(Engine.from_settings(cfg))
