"""A fake Discord gateway + REST API on 127.0.0.1 for tests with the real discord.py.

See ``server.FakeDiscord``; ``payloads`` builds the JSON it sends.
"""
from .payloads import ADMIN_ROLE_ID, CHANNEL_ID, GUILD_ID, user  # noqa: F401
from .server import REFUSED_TOKEN, Call, FakeDiscord  # noqa: F401
