"""Platform adapters: translate platform events to core requests and back.

Every adapter module exposes the same entry point, which ``python -m bot`` calls for
each platform whose token is set, all in one event loop:

    async def serve(core: bot.core.Core, token: str, stop: asyncio.Event) -> None

``serve`` connects, handles messages until ``stop`` is set, then shuts down cleanly.
It may raise (a bad token, an unreachable platform, a closed connection): ``python -m
bot`` logs it and calls ``serve`` again after a backoff, while the other adapters go on
(bot/supervise.py), so ``serve`` builds its client afresh on every call. Adapters never decide anything: commands, admin checks, limits and
ratings are ``Core.handle`` / ``Core.rate``; adapters split long replies with
``bot.core.split_message`` and attach ``bot.core.rating_buttons`` when a reply has
``rate_generation``.

Pushing to admins (optional): an adapter that can reach the admins unasked registers,
while it serves, one coroutine with the core and removes it when it stops:

    async def notify(text: str) -> None   # send ``text`` to every admin it can reach
    core.add_notifier(notify) ... core.remove_notifier(notify)

``Core.notify_admins`` calls every registered one (bot/notices.py uses it when a
training run finishes). ``notify`` logs a failed send per admin and carries on; the
core logs anything it raises, so a notice never crashes an adapter. Telegram and
Discord message each admin user id of ``[admins]`` privately; the console prints.
"""
