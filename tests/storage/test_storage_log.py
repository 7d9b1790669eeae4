"""Logging requests and generations, on SQLite and PostgreSQL (rolled back per test)."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import func, select

from storage.errors import InvalidInput, NotFound
from storage.log import (
    generation_of_request,
    get_generation,
    get_or_create_chat,
    get_or_create_user,
    get_request,
    log_request,
    recent_requests,
)
from storage.models import Chat, Generation, Request, User
from storage.records import MAX_PRIME_CHARS, MAX_TEXT_CHARS


def count(session, model) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_request_and_generation_are_stored(session, record):
    rec = record()
    logged = log_request(session, rec)
    req = get_request(session, logged.request_id)
    gen = get_generation(session, logged.generation_id)
    assert (req.style, req.command, req.prime, req.temperature, req.top_k, req.top_p,
            req.seed, req.max_chars, req.latency_ms, req.outcome, req.error) == (
        "austen", "austen", "It is a truth", 0.7, 0, 1.0, 7, 600, 120, "ok", None)
    assert req.model_version == "austen-20261122T080000-ab12"
    assert req.uid == rec.uid and req.prime_chars == len("It is a truth")
    assert (gen.request_id, gen.text, gen.length, gen.stop_reason) == (
        req.id, " universally acknowledged.", 26, "stop")
    assert req.created_at.tzinfo is not None
    assert abs(req.created_at - rec.created_at) < dt.timedelta(milliseconds=1)
    assert generation_of_request(session, req.id).id == gen.id


def test_users_and_chats_are_created_once_and_renamed(session, record):
    first = log_request(session, record())
    second = log_request(session, record(user_name="Ann B.", chat_title=""))
    a, b = get_request(session, first.request_id), get_request(session, second.request_id)
    assert a.user_id == b.user_id and a.chat_id == b.chat_id
    assert count(session, User) == 1 and count(session, Chat) == 1
    assert session.get(User, a.user_id).display_name == "Ann B."
    assert session.get(Chat, a.chat_id).title == "Readers"  # empty title keeps the old one
    other = get_or_create_user(session, "discord", "42")
    assert other != a.user_id  # same external id, other platform: another person
    assert get_or_create_chat(session, "telegram", -100) == a.chat_id  # ints are ids too


def test_failed_generation_keeps_the_request_and_its_error(session, record):
    logged = log_request(session, record(outcome="error", text=None, stop_reason=None,
                                         error="inference service: connection refused"))
    req = get_request(session, logged.request_id)
    assert logged.generation_id is None
    assert (req.outcome, req.error) == ("error", "inference service: connection refused")
    assert generation_of_request(session, req.id) is None


@pytest.mark.parametrize("outcome", ["rate_limited", "bad_input", "busy"])
def test_rejected_requests_are_logged(session, record, outcome):
    logged = log_request(session, record(outcome=outcome, style=None, command="austin",
                                         text=None, temperature=None, model_version=None,
                                         error="unknown style 'austin'"))
    req = get_request(session, logged.request_id)
    assert (req.outcome, req.style, req.command) == (outcome, None, "austin")


def test_logging_the_same_uid_twice_counts_once(session, record):
    rec = record()
    assert log_request(session, rec) == log_request(session, rec)
    assert count(session, Request) == 1 and count(session, Generation) == 1


def test_nul_emoji_and_surrogates_follow_the_text_rules(session, record):
    logged = log_request(session, record(prime="a\x00b 🦊 \ud800", text="ok\x00 🎭",
                                         error="x\x00y"))
    req, gen = get_request(session, logged.request_id), get_generation(
        session, logged.generation_id)
    assert req.prime == "a\ufffdb 🦊 \ufffd"
    assert gen.text == "ok\ufffd 🎭" and gen.length == 5
    assert req.error == "x\ufffdy"


def test_oversized_text_is_stored_truncated_with_its_real_length(session, record):
    prime, text = "p" * 100_000, "t" * (MAX_TEXT_CHARS + 10)
    logged = log_request(session, record(prime=prime, text=text,
                                         command="/" + "x" * 500))
    req, gen = get_request(session, logged.request_id), get_generation(
        session, logged.generation_id)
    assert (len(req.prime), req.prime_chars) == (MAX_PRIME_CHARS, 100_000)
    assert (len(gen.text), gen.length) == (MAX_TEXT_CHARS, MAX_TEXT_CHARS + 10)
    assert len(req.command) == 64


@pytest.mark.parametrize("overrides, fragment", [
    ({"temperature": math.nan}, "temperature must be a finite number"),
    ({"top_p": math.inf}, "top_p must be a finite number"),
    ({"top_k": -1}, "top_k must be an integer"),
    ({"seed": 2**64}, "seed must be an integer"),
    ({"latency_ms": 1.5}, "latency_ms must be an integer"),
    ({"outcome": "exploded"}, "outcome must be one of"),
    ({"stop_reason": None}, "stop_reason must be one of"),
    ({"style": "s" * 65}, "style is longer than 64"),
    ({"model_version": "v" * 129}, "model_version is longer than 128"),
    ({"user_external_id": ""}, "required"),
    ({"created_at": dt.datetime(2026, 1, 1)}, "aware datetime"),
])
def test_unstorable_values_are_refused_and_nothing_is_written(session, record, overrides,
                                                             fragment):
    with pytest.raises(InvalidInput, match=fragment):
        log_request(session, record(**overrides))
    assert count(session, Request) == 0 and count(session, User) == 0


def test_recent_requests_newest_first_and_filtered(session, record):
    base = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)
    ids = [log_request(session, record(created_at=base + dt.timedelta(minutes=i),
                                       user_external_id=str(i % 2))).request_id
           for i in range(4)]
    assert [r.id for r in recent_requests(session)] == ids[::-1]
    user = get_request(session, ids[1]).user_id
    assert [r.id for r in recent_requests(session, user_id=user)] == [ids[3], ids[1]]
    assert len(recent_requests(session, limit=2)) == 2


def test_missing_rows_raise_not_found(session):
    with pytest.raises(NotFound, match="no request 999"):
        get_request(session, 999)
    with pytest.raises(NotFound, match="no generation 999"):
        get_generation(session, 999)
