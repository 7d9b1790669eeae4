"""The database ids of a request's chat and user, created on first sight.

For the core (ratings) and the command handlers (temperature changes, retrain
requests): ``fn(session, request, ...)`` units of work that ``Database.run`` runs off
the event loop.

    user = user_row_id(session, Request("console", "local", "local"))
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from bot.messages import Request
from storage.log import get_or_create_chat, get_or_create_user


def chat_row_id(session: Session, request: Request) -> int:
    return get_or_create_chat(session, request.platform, request.chat_id or "?",
                              request.chat_name)


def user_row_id(session: Session, request: Request) -> int:
    return get_or_create_user(session, request.platform, request.user_id or "?",
                              request.user_name)
