"""JSON payloads the fake Discord sends: users, a guild, messages, interactions.

Only the fields discord.py 2.7 reads (or requires) are filled in; ids are plain
integers rendered as strings, as Discord's snowflakes are.
"""
from __future__ import annotations

import itertools
from typing import Any

APP_ID = 900_000_000_000_000_001
GUILD_ID = 900_000_000_000_000_002
CHANNEL_ID = 900_000_000_000_000_003
ADMIN_ROLE_ID = 900_000_000_000_000_004
# A role in the same server *named* like the admin role's id (not the admin role).
ID_NAMED_ROLE_ID = 900_000_000_000_000_005
# Another server the bot is in, with its own role named "admins". With two shards it
# is on shard 0 and GUILD_ID on shard 1 (shard = (guild_id >> 22) % shards).
OTHER_GUILD_ID = 900_000_000_020_971_522
OTHER_CHANNEL_ID = 900_000_000_020_971_523
OTHER_ADMINS_ROLE_ID = 900_000_000_020_971_524
BOT_USER_ID = APP_ID  # a bot user's id is its application's id
TIMESTAMP = "2026-11-26T12:00:00.000000+00:00"

_ids = itertools.count(910_000_000_000_000_000)


def new_id() -> int:
    return next(_ids)


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "global_name": name, "discriminator": "0",
            "avatar": None, "bot": bot, "public_flags": 0}


BOT_USER = user(BOT_USER_ID, "stylebot", bot=True)


def member(user_data: dict, roles: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"user": user_data, "roles": [str(r) for r in roles], "joined_at": TIMESTAMP,
            "deaf": False, "mute": False, "flags": 0, "pending": False,
            "permissions": "2251799813685247", "nick": None, "avatar": None}


def role(role_id: int, name: str, position: int) -> dict[str, Any]:
    return {"id": str(role_id), "name": name, "color": 0, "hoist": False, "position": position,
            "permissions": "0", "managed": False, "mentionable": False, "flags": 0}


def channel(guild_id: int = GUILD_ID) -> dict[str, Any]:
    channel_id = CHANNEL_ID if guild_id == GUILD_ID else OTHER_CHANNEL_ID
    return {"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": "general",
            "position": 0, "permission_overwrites": [], "nsfw": False, "topic": None,
            "last_message_id": None, "rate_limit_per_user": 0, "parent_id": None}


def dm_channel(channel_id: int, recipient: dict) -> dict[str, Any]:
    """A direct-message channel with one user (POST /users/@me/channels)."""
    return {"id": str(channel_id), "type": 1, "recipients": [recipient],
            "last_message_id": None, "flags": 0}


GUILDS = {  # guild id -> (name, roles besides @everyone)
    GUILD_ID: ("Readers", [(ADMIN_ROLE_ID, "admins"),
                           (ID_NAMED_ROLE_ID, str(ADMIN_ROLE_ID))]),
    OTHER_GUILD_ID: ("Elsewhere", [(OTHER_ADMINS_ROLE_ID, "admins")]),
}


def guild(guild_id: int = GUILD_ID) -> dict[str, Any]:
    """GUILD_CREATE data: one text channel, @everyone and the roles of ``GUILDS``."""
    name, roles = GUILDS[guild_id]
    return {"id": str(guild_id), "name": name, "icon": None, "owner_id": "1",
            "unavailable": False, "member_count": 1, "large": False, "features": [],
            "roles": [role(guild_id, "@everyone", 0)] + [
                role(role_id, role_name, i + 1) for i, (role_id, role_name) in enumerate(roles)],
            "channels": [channel(guild_id)], "members": [member(BOT_USER)], "emojis": [],
            "stickers": [], "voice_states": [], "presences": [], "threads": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "joined_at": TIMESTAMP, "preferred_locale": "en-US", "premium_tier": 0,
            "system_channel_flags": 0, "verification_level": 0, "mfa_level": 0,
            "nsfw_level": 0, "explicit_content_filter": 0, "default_message_notifications": 0}


def ready(session_id: str, resume_url: str, guilds: list[int],
          shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    return {"v": 10, "user": BOT_USER,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session_id, "resume_gateway_url": resume_url, "shard": list(shard),
            "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [],
            "relationships": []}


def application() -> dict[str, Any]:
    """GET /oauth2/applications/@me."""
    return {"id": str(APP_ID), "name": "stylebot", "description": "", "icon": None,
            "bot_public": False, "bot_require_code_grant": False, "owner": user(1, "owner"),
            "team": None, "verify_key": "0" * 64, "flags": 0, "rpc_origins": [],
            "summary": "", "bot": BOT_USER}


def message(body: dict, *, author: dict = BOT_USER, message_id: int | None = None,
            flags: int = 0, attachments: list | None = None) -> dict[str, Any]:
    """A message object from a create-message body (content, components, flags)."""
    return {"id": str(message_id or new_id()), "channel_id": str(CHANNEL_ID),
            "guild_id": str(GUILD_ID), "author": author,
            "content": body.get("content") or "", "timestamp": TIMESTAMP,
            "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": attachments or [],
            "embeds": body.get("embeds") or [], "pinned": False, "type": 0,
            "components": body.get("components") or [],
            "flags": flags | int(body.get("flags") or 0), "application_id": str(APP_ID)}


def interaction(kind: int, data: dict, token: str, author: dict,
                roles: tuple[int, ...] = (), msg: dict | None = None,
                guild_id: int = GUILD_ID) -> dict[str, Any]:
    """INTERACTION_CREATE data in a guild's channel (kind 2 command, 3 component)."""
    where = channel(guild_id)
    payload = {"id": str(new_id()), "application_id": str(APP_ID), "type": kind,
               "data": data, "guild_id": str(guild_id), "channel_id": where["id"],
               "channel": where, "member": member(author, roles), "token": token,
               "version": 1, "locale": "en-US", "guild_locale": "en-US",
               "app_permissions": "2251799813685247", "entitlements": [],
               "authorizing_integration_owners": {"0": str(guild_id)}, "context": 0,
               "attachment_size_limit": 8 * 1024 * 1024}
    if msg is not None:
        payload["message"] = msg
    return payload


def command_data(name: str, command_id: str, options: dict[str, str],
                 guild_id: int = GUILD_ID) -> dict[str, Any]:
    return {"id": command_id, "name": name, "type": 1, "guild_id": str(guild_id),
            "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]}
