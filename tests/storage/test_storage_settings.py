"""Temperature at three scopes: precedence chat > style > global > default, and the audit."""
from __future__ import annotations

import math

import pytest

from storage.errors import InvalidInput, NotFound
from storage.log import get_or_create_chat, get_or_create_user
from storage.settings import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    clear_temperature,
    effective_temperature,
    set_temperature,
    temperature_history,
    temperature_settings,
)


@pytest.fixture()
def people(session):
    admin = get_or_create_user(session, "telegram", "1", "Admin")
    chat = get_or_create_chat(session, "telegram", "-100", "Readers")
    other = get_or_create_chat(session, "telegram", "-200", "Others")
    return admin, chat, other


def test_precedence_chat_over_style_over_global_over_default(session, people):
    admin, chat, other = people
    assert effective_temperature(session, "austen", chat, 0.7) == (0.7, "default")
    set_temperature(session, 1.0, by_user_id=admin)
    assert effective_temperature(session, "austen", chat, 0.7) == (1.0, "global")
    set_temperature(session, 0.5, by_user_id=admin, style="austen")
    assert effective_temperature(session, "austen", chat, 0.7) == (0.5, "style")
    assert effective_temperature(session, "sotu", chat, 0.7) == (1.0, "global")
    set_temperature(session, 0.2, by_user_id=admin, chat_id=chat)
    assert effective_temperature(session, "austen", chat, 0.7) == (0.2, "chat")
    assert effective_temperature(session, "sotu", chat, 0.7) == (0.2, "chat")
    assert effective_temperature(session, "austen", other, 0.7) == (0.5, "style")
    assert effective_temperature(session, "austen", None, 0.7) == (0.5, "style")


def test_clearing_falls_back_to_the_next_scope(session, people):
    admin, chat, _ = people
    set_temperature(session, 0.5, by_user_id=admin, style="austen")
    set_temperature(session, 0.2, by_user_id=admin, chat_id=chat)
    assert clear_temperature(session, by_user_id=admin, chat_id=chat) == 0.2
    assert effective_temperature(session, "austen", chat, 0.7) == (0.5, "style")
    assert clear_temperature(session, by_user_id=admin, style="austen") == 0.5
    assert effective_temperature(session, "austen", chat, 0.7) == (0.7, "default")
    assert clear_temperature(session, by_user_id=admin, style="austen") is None


def test_the_audit_trail_records_every_change(session, people):
    admin, chat, _ = people
    assert set_temperature(session, 0.9, by_user_id=admin, style="austen") is None
    assert set_temperature(session, 1.1, by_user_id=admin, style="austen") == 0.9
    assert set_temperature(session, 1.1, by_user_id=None, style="austen") == 1.1
    set_temperature(session, 0.3, by_user_id=admin, chat_id=chat)
    clear_temperature(session, by_user_id=admin, style="austen")
    clear_temperature(session, by_user_id=admin, style="austen")  # nothing set: no row
    history = temperature_history(session, style="austen")
    assert [(h.old_value, h.new_value, h.changed_by_user_id, h.scope) for h in history] == [
        (1.1, None, admin, "style"), (1.1, 1.1, None, "style"), (0.9, 1.1, admin, "style"),
        (None, 0.9, admin, "style")]
    assert all(h.changed_at.tzinfo is not None for h in history)
    chat_rows = temperature_history(session, chat_id=chat)
    assert [(h.new_value, h.scope, h.chat_id) for h in chat_rows] == [(0.3, "chat", chat)]
    assert len(temperature_history(session)) == 5
    assert len(temperature_history(session, limit=2)) == 2


def test_current_settings_are_listed_by_scope(session, people):
    admin, chat, _ = people
    set_temperature(session, 0.2, by_user_id=admin, chat_id=chat)
    set_temperature(session, 0.5, by_user_id=admin, style="sotu")
    set_temperature(session, 1.0, by_user_id=admin)
    rows = temperature_settings(session)
    assert [(r.scope, r.style, r.chat_id, r.value, r.set_by_user_id) for r in rows] == [
        ("global", None, None, 1.0, admin), ("style", "sotu", None, 0.5, admin),
        ("chat", None, chat, 0.2, admin)]


RANGE = r"0 \(greedy\) or between 0.05 and 5"


@pytest.mark.parametrize("value, fragment", [
    (math.nan, "finite number"), (-0.1, RANGE), (MAX_TEMPERATURE + 0.01, RANGE),
    ("hot", "finite number"),
    # The sampler refuses these (1/T overflows float32 or is greedy anyway): a stored one
    # made every text in its scope fail.
    (0.01, RANGE), (MIN_TEMPERATURE / 2, RANGE), (1e-300, RANGE), (5e-324, RANGE)])
def test_bad_temperatures_are_refused(session, people, value, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        set_temperature(session, value, by_user_id=people[0])
    assert temperature_history(session) == []


def test_a_setting_has_one_scope(session, people):
    admin, chat, _ = people
    with pytest.raises(InvalidInput, match="not both"):
        set_temperature(session, 1.0, by_user_id=admin, style="austen", chat_id=chat)
    with pytest.raises(NotFound, match="no chat 9999"):
        set_temperature(session, 1.0, by_user_id=admin, chat_id=9999)
    with pytest.raises(InvalidInput, match="bad style"):
        set_temperature(session, 1.0, by_user_id=admin, style="")


def test_the_bounds_are_the_samplers(session, people):
    from genmodels import sampler
    assert (MIN_TEMPERATURE, MAX_TEMPERATURE) == (sampler.MIN_TEMPERATURE,
                                                  sampler.MAX_TEMPERATURE)
    for value in (0.0, MIN_TEMPERATURE, MAX_TEMPERATURE):  # every stored value samples
        set_temperature(session, value, by_user_id=people[0], style="austen")
        sampler.SamplingParams(temperature=value).validate()
