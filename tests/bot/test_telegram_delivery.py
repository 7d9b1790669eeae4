"""Telegram delivery against the fake Bot API: flood answers, server errors, who a
message is from, where a reply goes, the webhook's secret and repeated updates.

    .venv/bin/python -m pytest -q tests/bot/test_telegram_delivery.py
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from itertools import pairwise

import aiohttp
import pytest
from fake_telegram import ANONYMOUS_ADMIN, TOKEN, FakeTelegram
from test_telegram import USER, running, to_chat

from bot.adapters import telegram, telegram_delivery
from bot.adapters.telegram_updates import UpdateWindow
from genmodels.styles import ConfigError
from storage.models import Request as RequestRow, User


@pytest.fixture
def quick_retries(monkeypatch):
    """Transient failures retried after 50-200 ms instead of seconds."""
    monkeypatch.setattr(telegram_delivery, "BACKOFF_S", (0.05, 0.1, 0.2))


async def until(predicate, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_flood_answers_and_server_errors_are_retried_and_no_reply_is_lost(
        chat, quick_retries):
    users = range(100, 108)

    async def scenario():
        async with running(chat.core()) as server:
            server.fail("sendMessage", 429, times=2, retry_after=1)
            server.fail("sendMessage", 502, times=2)
            server.fail("sendMessage", 500, times=1)
            for user in users:
                server.message(user, user, "/tiny the")
            await server.wait_for("sendMessage", count=len(users))
            await asyncio.sleep(0.5)  # a duplicate would show up by now
            delivered = server.sent("sendMessage")
            assert sorted(p["chat_id"] for p in delivered) == list(users)  # 0 lost, 0 twice
            assert [status for _, status in server.failed] == [429, 429, 502, 502, 500]
            first_429 = server.failed[0][0]
            (retried,) = [c for c in server.calls if c.method == "sendMessage"
                          and c.params["chat_id"] == first_429.params["chat_id"]]
            assert retried.at - first_429.at >= 1.0  # retry_after was waited out
    chat.run(scenario)
    assert [r.outcome for r in chat.rows(RequestRow)] == ["ok"] * len(users)


def test_a_reply_that_cannot_be_delivered_is_logged_as_undelivered(
        chat, quick_retries, monkeypatch):
    monkeypatch.setattr(telegram_delivery, "MAX_RETRIES", 1)
    monkeypatch.setattr(telegram_delivery, "BACKOFF_S", (0.05,))
    undelivered = RequestRow.outcome == "undelivered"

    async def scenario():
        async with running(chat.core()) as server:
            server.fail("sendMessage", 500, times=2)  # the send and its one retry
            server.message(201, 201, "/tiny the")
            await until(lambda: chat.count(RequestRow, undelivered) == 1)
            server.fail("sendMessage", 429, times=2, retry_after=1)  # the same, flooded
            server.message(202, 202, "/tiny the")
            await until(lambda: chat.count(RequestRow, undelivered) == 2)
            server.message(203, 203, "/tiny the")
            await server.wait_for("sendMessage", to_chat(203))
            # No apology either: it would meet the same wall.
            assert server.sent("sendMessage", lambda p: p["chat_id"] in (201, 202)) == []
    chat.run(scenario)
    first, second, third = sorted(chat.rows(RequestRow), key=lambda r: r.id)
    assert (first.outcome, second.outcome, third.outcome) == (
        "undelivered", "undelivered", "ok")
    assert first.error.startswith("reply not delivered: NetworkError")
    assert second.error.startswith("reply not delivered: RetryAfter")


def test_replies_keep_to_one_message_a_second_per_chat(chat):
    async def scenario():
        server = await FakeTelegram().start()
        app = telegram.build_application(chat.core(), TOKEN, server.base_url)
        try:
            async with app:
                await asyncio.gather(*(app.bot.send_message(USER, f"n{i}") for i in range(3)),
                                     app.bot.send_message(USER + 1, "other chat"))
        finally:
            await server.stop()
        times = sorted(c.at for c in server.calls if c.params.get("chat_id") == USER)
        assert len(times) == 3 and min(b - a for a, b in pairwise(times)) >= 0.9
        (other,) = [c.at for c in server.calls if c.params.get("chat_id") == USER + 1]
        assert other - times[0] < 0.5  # another chat does not wait
    chat.run(scenario)


def test_anonymous_group_admins_are_their_group_not_the_placeholder(chat):
    async def scenario():
        async with running(chat.core(rate_burst=1, rate_per_minute=1)) as server:
            server.message(-100, 5, "/tiny the", chat_type="supergroup", anonymous=True)
            server.message(-200, 6, "/tiny the", chat_type="supergroup", anonymous=True)
            replies = await server.wait_for("sendMessage", count=2)
            # One placeholder for both would share one rate limit: "slow down" for one.
            assert all(r["text"].startswith("the") for r in replies)
    chat.run(scenario)
    users = {u.external_id: u.display_name for u in chat.rows(User)}
    assert users == {"-100": "group -100", "-200": "group -200"}
    assert str(ANONYMOUS_ADMIN["id"]) not in users


def test_replies_go_to_the_commands_topic_and_answer_it_in_groups(chat):
    async def scenario():
        async with running(chat.core()) as server:
            server.message(-300, USER, "/tiny the", chat_type="supergroup", topic=77)
            command = server.updates[-1]["message"]["message_id"]
            (reply,) = await server.wait_for("sendMessage", to_chat(-300))
            assert reply["message_thread_id"] == 77
            assert reply["reply_parameters"]["message_id"] == command
            typing = server.sent("sendChatAction", to_chat(-300))
            assert typing and typing[0]["message_thread_id"] == 77
            server.message(-400, USER, "/tiny the", chat_type="group")
            command = server.updates[-1]["message"]["message_id"]
            (reply,) = await server.wait_for("sendMessage", to_chat(-400))
            assert reply["reply_parameters"]["message_id"] == command
            assert "message_thread_id" not in reply
            server.message(USER, USER, "/tiny the")  # private: a plain message
            (reply,) = await server.wait_for("sendMessage", to_chat(USER))
            assert "message_thread_id" not in reply and "reply_parameters" not in reply
    chat.run(scenario)


def webhook_core(chat, port: int, listen: str = "127.0.0.1"):
    core = chat.core()
    core.settings = dataclasses.replace(
        core.settings, telegram_mode="webhook", telegram_port=port,
        telegram_listen=listen, telegram_webhook_url="https://bot.example.org/hook/tg")
    return core


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_webhook_open_to_the_network_needs_a_secret(chat, monkeypatch):
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    settings = webhook_core(chat, 8443, listen="0.0.0.0").settings
    with pytest.raises(ConfigError, match="needs TELEGRAM_WEBHOOK_SECRET"):
        telegram.check_config(settings)
    with pytest.raises(ConfigError, match="A-Z, a-z"):
        telegram.check_config(settings, {"TELEGRAM_WEBHOOK_SECRET": "has spaces"})
    telegram.check_config(settings, {"TELEGRAM_WEBHOOK_SECRET": "s3cret-OK_1"})
    for host in ("127.0.0.1", "::1", "localhost"):
        telegram.check_config(dataclasses.replace(settings, telegram_listen=host), {})
    for host in ("0.0.0.0", "::", "bot.example.org", "10.0.0.5"):
        with pytest.raises(ConfigError):
            telegram.check_config(dataclasses.replace(settings, telegram_listen=host), {})
    chat.run(chat.close)


def test_the_same_update_posted_twice_is_answered_and_logged_once(
        chat, monkeypatch, caplog):
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    port = free_port()
    update = {"update_id": 7001, "message": {
        "message_id": 5, "date": 0, "text": "/tiny the",
        "chat": {"id": USER, "type": "private", "first_name": "u"},
        "from": {"id": USER, "is_bot": False, "first_name": "u"},
        "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}}

    async def scenario():
        server = await FakeTelegram().start()
        stop = asyncio.Event()
        task = asyncio.create_task(telegram.serve(webhook_core(chat, port), TOKEN, stop,
                                                  base_url=server.base_url))
        try:
            (hook,) = await server.wait_for("setWebhook")
            assert "secret_token" not in hook  # loopback: allowed without, with a warning
            url = f"http://127.0.0.1:{port}/hook/tg"
            async with aiohttp.ClientSession() as http:
                posts = [http.post(url, json=update) for _ in range(3)]
                for response in await asyncio.gather(*posts):
                    assert response.status == 200  # else Telegram would post it again
            await server.wait_for("sendMessage", to_chat(USER))
            await asyncio.sleep(0.5)  # a second reply would show up by now
            assert len(server.sent("sendMessage", to_chat(USER))) == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
            await server.stop()
    with caplog.at_level(logging.WARNING, logger="bot.adapters.telegram"):
        chat.run(scenario)
    assert "without TELEGRAM_WEBHOOK_SECRET, accepted because it listens on 127.0.0.1" \
        in caplog.text
    assert chat.count(RequestRow) == 1


def test_the_update_window_remembers_the_last_ids_only():
    window = UpdateWindow(size=3)
    assert [window.seen(i) for i in (1, 2, 1, 3, 4)] == [False, False, True, False, False]
    assert window.seen(1) is False  # pushed out by 4: memory stays bounded
    assert [window.seen(i) for i in (3, 4, 1)] == [True, True, True]
