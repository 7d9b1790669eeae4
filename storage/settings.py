"""Sampling temperature at three scopes, with an audit trail of every change.

Precedence for a request in (chat, style): the chat's setting, else the style's, else
the global one, else the default from config.toml the caller passes in. Every set and
clear writes a ``SettingChange`` row (old value, new value, who, when) in the same
transaction as the change, so the trail cannot miss one.

    from storage.settings import effective_temperature, set_temperature
    set_temperature(session, 0.9, by_user_id=admin_id, style="austen")
    effective_temperature(session, "austen", chat_id, default=0.7)  # Effective(0.9, "style")
"""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

# The sampler's bounds, so no stored temperature is one generation refuses (NumPy only).
from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE
from storage.errors import InvalidInput, NotFound
from storage.models import STYLE_LEN, Chat, Setting, SettingChange, TemperatureScope, utcnow
from storage.records import check_float
from storage.upsert import insert_ignore

TEMPERATURE = "temperature"


class Effective(NamedTuple):
    value: float
    scope: str  # "chat", "style", "global" or "default"


def usable_temperature(value: float) -> bool:
    """Whether the sampler takes ``value``: 0 (greedy) or MIN_TEMPERATURE..MAX_TEMPERATURE."""
    return value == 0.0 or MIN_TEMPERATURE <= value <= MAX_TEMPERATURE


def check_temperature(value) -> float:
    """``value`` as a float the sampler takes, else ``InvalidInput`` naming the range."""
    value = check_float("temperature", value)
    if value is None:
        raise InvalidInput("temperature must be a finite number, got None")
    if not usable_temperature(value):
        raise InvalidInput(f"temperature must be 0 (greedy) or between "
                           f"{MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, got {value:.3g}")
    return value


def _scope(style: str | None, chat_id: int | None) -> TemperatureScope:
    if style is not None and chat_id is not None:
        raise InvalidInput("a temperature is set for a chat or for a style, not both")
    if chat_id is not None:
        return TemperatureScope.CHAT
    if style is not None:
        if not style or len(style) > STYLE_LEN:
            raise InvalidInput(f"bad style name {style[:40]!r}")
        return TemperatureScope.STYLE
    return TemperatureScope.GLOBAL


def _key(name: str, scope: str, style: str | None, chat_id: int | None) -> str:
    target = {"global": "", "style": style, "chat": str(chat_id)}[scope]
    return f"{name}|{scope}|{target}"


def set_temperature(session: Session, value: float, *, by_user_id: int | None,
                    style: str | None = None, chat_id: int | None = None) -> float | None:
    """Set the temperature for a chat, a style, or globally (neither); the old value."""
    value = check_temperature(value)
    scope = _scope(style, chat_id)
    if chat_id is not None and session.get(Chat, chat_id) is None:
        raise NotFound(f"no chat {chat_id}")
    key = _key(TEMPERATURE, scope, style, chat_id)
    row = _locked(session, key)
    if row is None:
        now = utcnow()
        if insert_ignore(session, Setting.__table__, {
                "key": key, "name": TEMPERATURE, "scope": scope.value, "style": style,
                "chat_id": chat_id, "value": value, "set_by_user_id": by_user_id,
                "set_at": now}, ["key"]) is not None:
            _audit(session, scope, style, chat_id, None, value, by_user_id, now)
            session.flush()
            return None
        row = _locked(session, key)  # another admin created it a moment ago
        assert row is not None  # our insert found it: it is there, and nothing deletes it
    old, now = row.value, utcnow()  # the time after we hold the lock: changes stay in order
    row.value, row.set_by_user_id, row.set_at = value, by_user_id, now
    _audit(session, scope, style, chat_id, old, value, by_user_id, now)
    session.flush()
    return old


def clear_temperature(session: Session, *, by_user_id: int | None,
                      style: str | None = None, chat_id: int | None = None) -> float | None:
    """Remove a setting so the next scope down applies; the old value (None: was unset)."""
    scope = _scope(style, chat_id)
    row = _locked(session, _key(TEMPERATURE, scope, style, chat_id))
    if row is None:
        return None
    old, now = row.value, utcnow()
    session.execute(delete(Setting).where(Setting.id == row.id))
    _audit(session, scope, style, chat_id, old, None, by_user_id, now)
    session.flush()
    return old


def _locked(session: Session, key: str) -> Setting | None:
    # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers.
    return session.execute(select(Setting).where(Setting.key == key).with_for_update()
                           .execution_options(populate_existing=True)).scalar_one_or_none()


def _audit(session, scope, style, chat_id, old, new, by_user_id, when) -> None:
    session.add(SettingChange(name=TEMPERATURE, scope=scope.value, style=style,
                              chat_id=chat_id, old_value=old, new_value=new,
                              changed_by_user_id=by_user_id, changed_at=when))


def effective_temperature(session: Session, style: str, chat_id: int | None,
                          default: float) -> Effective:
    """The temperature to use in ``chat_id`` for ``style``: chat > style > global > default."""
    keys = [_key(TEMPERATURE, "global", None, None), _key(TEMPERATURE, "style", style, None)]
    if chat_id is not None:
        keys.append(_key(TEMPERATURE, "chat", None, chat_id))
    found = dict(session.execute(
        select(Setting.scope, Setting.value).where(Setting.key.in_(keys))).all())
    for scope in ("chat", "style", "global"):
        if scope in found:
            return Effective(found[scope], scope)
    return Effective(default, "default")


def temperature_settings(session: Session) -> list[Setting]:
    """Every temperature currently set, global first, then styles, then chats."""
    order = {"global": 0, "style": 1, "chat": 2}
    rows = session.execute(select(Setting).where(Setting.name == TEMPERATURE)).scalars()
    return sorted(rows, key=lambda r: (order[r.scope], r.style or "", r.chat_id or 0))


def temperature_history(session: Session, *, style: str | None = None,
                        chat_id: int | None = None, limit: int = 50) -> list[SettingChange]:
    """Audit rows, newest first; filtered to one style or one chat when given.

    Ordered by id: writers of one setting are serialised by its row lock, so ids follow
    the order the changes were applied even when two clocks disagree.
    """
    stmt = select(SettingChange).where(SettingChange.name == TEMPERATURE)
    if style is not None:
        stmt = stmt.where(SettingChange.style == style)
    if chat_id is not None:
        stmt = stmt.where(SettingChange.chat_id == chat_id)
    stmt = stmt.order_by(SettingChange.id.desc())
    return list(session.execute(stmt.limit(limit)).scalars())
