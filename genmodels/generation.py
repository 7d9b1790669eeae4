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

from genmodels.blas_threads import check_setting
from genmodels.sampler import Generation, SamplingParams
from genmodels.styles import ConfigError, read_config


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


INFERENCE_DEFAULTS = {"url": "", "timeout_s": 60.0, "retries": 2, "max_batch": 256,
                      "max_queue": 256, "poll_s": 2.0, "backend": "auto",
                      "blas_threads": "auto",
                      # The service's HTTP server (genmodels/service_http.py).
                      "keepalive_s": 30.0, "read_timeout_s": 10.0, "max_connections": 1024}


def inference_settings(path: str | Path | None = None) -> dict:
    """The ``[inference]`` table of config.toml over the defaults (keys checked)."""
    try:
        table = read_config(path)[1].get("inference", {})
    except (ConfigError, OSError):
        table = {}  # load_styles reports a broken config; serving falls back to defaults
    unknown = sorted(set(table) - set(INFERENCE_DEFAULTS))
    if unknown:
        raise ValueError(f"inference.{unknown[0]}: unknown key (known: "
                         f"{', '.join(INFERENCE_DEFAULTS)})")
    out = INFERENCE_DEFAULTS | table
    for key, default in INFERENCE_DEFAULTS.items():
        if key == "blas_threads":  # "auto" or a number: not one type
            try:
                check_setting(out[key])
            except ValueError as exc:
                raise ValueError(f"inference.{exc}") from None
        elif not isinstance(out[key], type(default)) and not (
                isinstance(default, float) and isinstance(out[key], int)):
            raise ValueError(f"inference.{key}: expected {type(default).__name__}, "
                             f"got {out[key]!r}")
    return out


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
