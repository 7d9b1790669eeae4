"""Logging requests and what they generated; users and chats come into being on first use.

Every function takes an open ``Session`` and only flushes: the caller owns the
transaction (``Database.run`` commits one unit of work; tests roll it back).

    from storage.log import log_request
    ids = log_request(session, RequestRecord("telegram", "42", "-100", style="austen", ...))
"""
from __future__ import annotations

import functools
from typing import NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from storage.errors import InvalidInput, NotFound
from storage.models import STYLE_LEN, VERSION_LEN, Chat, Generation, Outcome, Request, User
from storage.records import (
    MAX_ERROR_CHARS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_PRIME_CHARS,
    MAX_TEXT_CHARS,
    RequestRecord,
    clean_text,
)
from storage.upsert import insert_ignore

_EXACT_LIMITS = (("platform", 16), ("style", STYLE_LEN), ("model_version", VERSION_LEN))
_INSERT_GENERATION = insert(Generation.__table__).returning(Generation.__table__.c.id)


class Logged(NamedTuple):
    request_id: int
    generation_id: int | None  # what a rating refers to; None when nothing was generated
    user_id: int
    chat_id: int


def get_or_create_user(session: Session, platform: str, external_id: str | int,
                       display_name: str = "") -> int:
    """The id of the user (platform, external_id); a changed display name is updated."""
    return _get_or_create(session, User, User.display_name, platform, external_id,
                          display_name)


def get_or_create_chat(session: Session, platform: str, external_id: str | int,
                       title: str = "") -> int:
    """The id of the chat (platform, external_id); a changed title is updated."""
    return _get_or_create(session, Chat, Chat.title, platform, external_id, title)


@functools.cache
def _lookup(model, label_column):
    # Built once, values bound at execution: cached SQL (see storage/upsert.py).
    return select(model.id, label_column).where(
        model.platform == bindparam("platform"),
        model.external_id == bindparam("external_id"))


def _get_or_create(session, model, label_column, platform, external_id, label) -> int:
    external_id = clean_text(str(external_id), MAX_ID_CHARS)
    label = clean_text(label, MAX_NAME_CHARS)
    lookup, key = _lookup(model, label_column), {"platform": platform,
                                                 "external_id": external_id}
    row = session.execute(lookup, key).first()
    if row is None:
        new_id = insert_ignore(session, model.__table__, {
            "platform": platform, "external_id": external_id, label_column.key: label},
            ["platform", "external_id"])
        if new_id is not None:
            return new_id
        # Another connection created it between our SELECT and INSERT.
        row = session.execute(lookup, key).one()
    if label and row[1] != label:
        session.execute(update(model).where(model.id == row[0])
                        .values({label_column.key: label}))
    return row[0]


def log_request(session: Session, record: RequestRecord, *, user_id: int | None = None,
                chat_id: int | None = None) -> Logged:
    """Store a request and its generation (if any); logging the same ``uid`` twice is a no-op.

    ``user_id`` / ``chat_id``, when the caller already knows them (``Database`` caches
    them), save the two lookups; they must be ids of committed rows.
    """
    record.checked()
    for name, limit in _EXACT_LIMITS:
        value = getattr(record, name)
        if value is not None and len(value) > limit:
            raise InvalidInput(f"{name} is longer than {limit} characters: {value[:40]!r}...")
    values = _request_values(record)
    values["user_id"] = user_id or get_or_create_user(
        session, record.platform, record.user_external_id, record.user_name)
    values["chat_id"] = chat_id or get_or_create_chat(
        session, record.platform, record.chat_external_id, record.chat_title)
    request_id = insert_ignore(session, Request.__table__, values, ["uid"])
    if request_id is None:  # replayed from the spool after it was already stored
        return _already_logged(session, record.uid)
    generation_id = None
    if record.text is not None:
        generation_id = session.execute(_INSERT_GENERATION, {
            "request_id": request_id, "text": clean_text(record.text, MAX_TEXT_CHARS),
            "length": len(record.text), "stop_reason": record.stop_reason,
            "created_at": record.created_at}).scalar_one()
    return Logged(request_id, generation_id, values["user_id"], values["chat_id"])


def _request_values(record: RequestRecord) -> dict:
    return {
        "uid": record.uid, "created_at": record.created_at,
        "command": clean_text(record.command, 64), "style": record.style,
        "variant": clean_text(record.variant, 32),
        "prime": clean_text(record.prime, MAX_PRIME_CHARS),
        "prime_chars": len(record.prime or ""),
        "temperature": record.temperature, "top_k": record.top_k, "top_p": record.top_p,
        "seed": record.seed, "max_chars": record.max_chars,
        "model_version": record.model_version, "latency_ms": record.latency_ms,
        "outcome": record.outcome,
        "error": None if record.error is None else clean_text(record.error,
                                                              MAX_ERROR_CHARS),
    }


def _already_logged(session: Session, uid: str) -> Logged:
    request_id, user_id, chat_id = session.execute(
        select(Request.id, Request.user_id, Request.chat_id).where(Request.uid == uid)).one()
    generation_id = session.execute(
        select(Generation.id).where(Generation.request_id == request_id)).scalar()
    return Logged(request_id, generation_id, user_id, chat_id)


def get_request(session: Session, request_id: int) -> Request:
    """The request row; ``NotFound`` if there is none."""
    row = session.get(Request, request_id)
    if row is None:
        raise NotFound(f"no request {request_id}")
    return row


def get_generation(session: Session, generation_id: int) -> Generation:
    """The generation row; ``NotFound`` if there is none."""
    row = session.get(Generation, generation_id)
    if row is None:
        raise NotFound(f"no generation {generation_id}")
    return row


def mark_undelivered(session: Session, uid: str, reason: str) -> bool:
    """Record that the reply to request ``uid`` never reached the user; False if no row.

    An ``ok`` row becomes ``undelivered``; a refusal keeps its outcome (what became of
    the request) and the note goes to ``error``.
    """
    row = session.execute(select(Request.id, Request.outcome, Request.error)
                          .where(Request.uid == uid)).first()
    if row is None:
        return False
    note = f"reply not delivered: {reason}"
    if row.outcome == Outcome.OK.value:
        values = {"outcome": Outcome.UNDELIVERED.value, "error": note}
    else:
        values = {"error": f"{row.error}; {note}" if row.error else note}
    values["error"] = clean_text(values["error"], MAX_ERROR_CHARS)
    session.execute(update(Request).where(Request.id == row.id).values(values))
    return True


def generation_of_request(session: Session, request_id: int) -> Generation | None:
    return session.execute(
        select(Generation).where(Generation.request_id == request_id)).scalar_one_or_none()


def recent_requests(session: Session, *, user_id: int | None = None,
                    chat_id: int | None = None, limit: int = 20) -> list[Request]:
    """The newest requests first, optionally of one user or one chat."""
    stmt = select(Request).order_by(Request.created_at.desc(), Request.id.desc())
    if user_id is not None:
        stmt = stmt.where(Request.user_id == user_id)
    if chat_id is not None:
        stmt = stmt.where(Request.chat_id == chat_id)
    return list(session.execute(stmt.limit(limit)).scalars())
