"""The Telegram update journal and undelivered replies, on SQLite and PostgreSQL.

    .venv/bin/python -m pytest -q tests/storage/test_storage_updates.py
"""
from __future__ import annotations

import datetime as dt

from storage.log import get_request, log_request, mark_undelivered
from storage.models import utcnow
from storage.updates import KEEP, finish_update, prune_updates, record_update, unfinished_updates


def test_an_update_is_recorded_once_and_unfinished_until_done(session):
    assert record_update(session, 7, 12, '{"update_id": 12}')
    assert record_update(session, 7, 11, '{"update_id": 11}')
    assert not record_update(session, 7, 12, '{"update_id": 12}')  # a repeat
    assert record_update(session, 8, 12, '{"update_id": 12}')  # another bot's id 12
    assert unfinished_updates(session, 7) == ['{"update_id": 11}', '{"update_id": 12}']
    finish_update(session, 7, 11)
    assert unfinished_updates(session, 7) == ['{"update_id": 12}']
    assert not record_update(session, 7, 11, "{}")  # finished, still recognised
    assert prune_updates(session) == 0
    assert prune_updates(session, now=utcnow() + KEEP + dt.timedelta(minutes=1)) == 3
    assert unfinished_updates(session, 7) == [] and record_update(session, 7, 11, "{}")


def test_an_undelivered_reply_marks_its_request(session, record):
    ok, refused = record(), record(outcome="rate_limited", error="Slow down", text=None)
    ids = [log_request(session, r).request_id for r in (ok, refused)]
    assert mark_undelivered(session, ok.uid, "RetryAfter: retry in 5 s")
    assert mark_undelivered(session, refused.uid, "NetworkError: Bad Gateway")
    assert not mark_undelivered(session, "f" * 32, "no such request")
    first, second = (get_request(session, i) for i in ids)
    assert (first.outcome, first.error) == ("undelivered",
                                            "reply not delivered: RetryAfter: retry in 5 s")
    assert (second.outcome, second.error) == (
        "rate_limited", "Slow down; reply not delivered: NetworkError: Bad Gateway")
