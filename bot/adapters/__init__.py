"""Platform adapters: translate platform events to core requests and back.

Every adapter module exposes the same entry point, which ``python -m bot`` calls for
each platform whose token is set, all in one event loop:

    async def serve(core: bot.core.Core, token: str, stop: asyncio.Event) -> None

``serve`` connects, handles messages until ``stop`` is set, then shuts down cleanly
(it may raise for a bad token or an unreachable platform; ``python -m bot`` reports it
in one line). Adapters never decide anything: commands, admin checks, limits and
ratings are ``Core.handle`` / ``Core.rate``; adapters split long replies with
``bot.core.split_message`` and attach ``bot.core.rating_buttons`` when a reply has
``rate_generation``.
"""
