"""The generation client interface the bot uses, and the errors a user may see.

The chat core only ever calls ``GenerationClient.generate`` / ``versions`` / ``close``;
two classes implement it: ``serving.engine.EngineClient`` (the batching engine in
this process) and ``serving.http_client.HttpClient`` (the inference service,
``python -m serving``). Which one runs is chosen where the bot is wired
(``bot.wiring.make_client``), so this module knows neither. The three exceptions'
messages are short and safe to show to a user.

    result = await client.generate("austen", "It is", SamplingParams(seed=1))
    print(result.sample.text, result.latency_ms)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from genmodels.sampler import Sample, SamplingParams

# The service's shared-secret header: the HTTP client sends it, the service checks it.
SECRET_HEADER = "X-Inference-Secret"


class GenerationError(Exception):
    """Generation failed; the message is safe to show to a user."""


class Busy(GenerationError):
    """Too many generations in flight; try again in a moment."""


class ModelUnavailable(GenerationError):
    """The style's model could not be loaded."""


@dataclass(frozen=True)
class Result:
    """A written text and its timings: what every client returns, and what the engine
    resolves a request with (the one wrapper around a ``Sample``)."""

    sample: Sample
    latency_ms: float  # from the call to the last character
    # The engine's own figures (zero over HTTP, whose answer carries them as "timings").
    queued_ms: float = 0.0  # waiting for a batch slot
    generate_ms: float = 0.0  # from joining the batch to the last character
    steps: int = 0  # batch steps the request took part in (context + characters)


class GenerationClient(Protocol):
    async def generate(self, style: str, prime: str, params: SamplingParams) -> Result: ...

    async def versions(self) -> dict[str, str]:
        """Style name -> model version currently served (loaded styles only)."""
        ...

    async def close(self) -> None: ...
