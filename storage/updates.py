"""The journal of received Telegram updates (table ``telegram_updates``).

An update is recorded before Telegram is told it arrived and marked done once it has
been answered; what is still unfinished at start was interrupted by a crash and is
handled again. A second record of the same (bot, update id) is refused, so an update
Telegram delivers twice is answered once. Rows older than ``KEEP`` are pruned, finished
or not: nobody wants the answer to a message from days ago.

The journal is what webhook replicas share: the unique (bot, update id) makes the first
replica to record an update its only handler, whichever replica Telegram (or a load
balancer's retry) hands it to. While a replica holds an update it renews the row's
``received_at`` (``renew_updates``: a lease), so an unfinished row left unrenewed for a
while belongs to a replica that died, and ``claim_stale_updates`` hands it to exactly
one live replica (a conditional UPDATE: of two claimers, one matches the row).

    new = record_update(session, bot_id, update_id, json_text)   # False: seen before
    finish_update(session, bot_id, update_id)
    bodies = unfinished_updates(session, bot_id)                  # oldest first
    renew_updates(session, bot_id, [update_id, ...])              # still ours
    bodies = claim_stale_updates(session, bot_id, older_than)     # a dead replica's
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.models import TelegramUpdate, utcnow
from storage.upsert import insert_ignore, rows_affected

# Telegram keeps an unconfirmed update for 24 hours: an older one is never redelivered,
# so its row is no longer needed to recognise a repeat.
KEEP = dt.timedelta(hours=48)


def record_update(session: Session, bot_id: int, update_id: int, body: str) -> bool:
    """Keep a received update; False if this bot's update id was recorded before."""
    new_id = insert_ignore(session, TelegramUpdate.__table__, {
        "bot_id": bot_id, "update_id": update_id, "body": body,
        "received_at": utcnow()}, ["bot_id", "update_id"])
    return new_id is not None


def finish_update(session: Session, bot_id: int, update_id: int) -> None:
    session.execute(update(TelegramUpdate)
                    .where(TelegramUpdate.bot_id == bot_id,
                           TelegramUpdate.update_id == update_id,
                           TelegramUpdate.done_at.is_(None))
                    .values(done_at=utcnow()))


def unfinished_updates(session: Session, bot_id: int) -> list[str]:
    """The JSON of every update recorded but not done, in update id order."""
    return list(session.execute(
        select(TelegramUpdate.body)
        .where(TelegramUpdate.bot_id == bot_id, TelegramUpdate.done_at.is_(None))
        .order_by(TelegramUpdate.update_id)).scalars())


def prune_updates(session: Session, now: dt.datetime | None = None) -> int:
    """Delete updates received more than ``KEEP`` ago; how many went."""
    cutoff = (now or utcnow()) - KEEP
    return rows_affected(session, delete(TelegramUpdate).where(
        TelegramUpdate.received_at < cutoff))


def renew_updates(session: Session, bot_id: int, update_ids: list[int]) -> int:
    """Mark unfinished updates this process holds as alive; how many rows matched."""
    if not update_ids:
        return 0
    return rows_affected(session, update(TelegramUpdate)
                         .where(TelegramUpdate.bot_id == bot_id,
                                TelegramUpdate.update_id.in_(update_ids),
                                TelegramUpdate.done_at.is_(None))
                         .values(received_at=utcnow()))


def claim_stale_updates(session: Session, bot_id: int, older_than: dt.timedelta,
                        limit: int = 100) -> list[str]:
    """The JSON of unfinished updates nobody renewed for ``older_than``, now ours
    (renewed by this call), in update id order; another claimer gets none of them."""
    cutoff = utcnow() - older_than
    stale = session.execute(
        select(TelegramUpdate.id, TelegramUpdate.body)
        .where(TelegramUpdate.bot_id == bot_id, TelegramUpdate.done_at.is_(None),
               TelegramUpdate.received_at < cutoff)
        .order_by(TelegramUpdate.update_id).limit(limit)).all()
    claimed = []
    for row_id, body in stale:
        # Re-checked in the UPDATE itself: a concurrent claimer's renewal makes it miss.
        if rows_affected(session, update(TelegramUpdate)
                         .where(TelegramUpdate.id == row_id,
                                TelegramUpdate.done_at.is_(None),
                                TelegramUpdate.received_at < cutoff)
                         .values(received_at=utcnow())):
            claimed.append(body)
    return claimed
