"""Where the bot is put together: the generation client that config.toml asks for.

The in-process batching engine (``serving.engine.EngineClient``) by default, or the
HTTP inference service (``serving.http_client.HttpClient``) when ``[inference] url``
(one service) or ``urls`` (replicas, balanced) is set. ``Core.from_config`` calls it;
both clients implement ``serving.client.GenerationClient``, which knows neither.

    python -c "from bot.wiring import make_client; print(type(make_client()).__name__)"
"""
from __future__ import annotations

import os
from pathlib import Path

from serving import model_follow
from serving.client import GenerationClient
from serving.config import inference_settings


def make_client(config: str | Path | None = None) -> GenerationClient:
    """The client config.toml (``$BOT_CONFIG``) asks for; ``ValueError`` for a bad
    ``[inference]`` table."""
    cfg = inference_settings(config)
    # With an object store the database names the active versions; the bot's /neurons
    # draws what it names even when generation runs in another process.
    model_follow.install(config)
    if cfg["urls"]:
        from serving.http_client import HttpClient  # only the chosen client is loaded
        return HttpClient(cfg["urls"], timeout_s=float(cfg["timeout_s"]),
                          retries=cfg["retries"], secret=os.environ.get("INFERENCE_SECRET"))
    from serving.engine import Engine, EngineClient
    return EngineClient(Engine.from_settings(cfg))
