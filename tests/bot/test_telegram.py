"""The real python-telegram-bot Application against a fake Bot API server on 127.0.0.1.

A conversation goes through long polling exactly as in production: the fake server
hands out updates from getUpdates and records what the bot sends back.
"""
from __future__ import annotations

import asyncio
import contextlib

from fake_telegram import TOKEN, FakeTelegram

from bot.adapters import telegram
from bot.core import Reply
from storage.models import Rating, Request as RequestRow, SettingChange

ADMIN = 1  # an admin in the chat fixture's settings
USER = 42


@contextlib.asynccontextmanager
async def running(core):
    """The fake server and the adapter's ``serve`` polling it, stopped cleanly at the end."""
    server = await FakeTelegram().start()
    stop = asyncio.Event()
    task = asyncio.create_task(telegram.serve(core, TOKEN, stop, base_url=server.base_url))
    try:
        started = asyncio.create_task(server.wait_for("setMyCommands"))
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # serve failed at start: raise its error
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await server.stop()


def to_chat(chat_id):
    return lambda p: p.get("chat_id") == chat_id


def test_a_conversation_with_rating_buttons(chat):
    async def scenario():
        async with running(chat.core()) as server:
            (commands,) = server.sent("setMyCommands")
            names = [c["command"] for c in commands["commands"]]
            assert names[:3] == ["start", "help", "styles"] and "fable" in names
            assert "rate" not in names  # console only
            server.message(USER, USER, "/fable fox the cat")
            (reply,) = await server.wait_for("sendMessage", to_chat(USER))
            assert reply["text"].startswith("the cat") and "parse_mode" not in reply
            (up, down), = reply["reply_markup"]["inline_keyboard"]
            assert up["text"] == "\N{THUMBS UP SIGN}" and up["callback_data"].endswith(":+1")
            assert server.sent("sendChatAction", to_chat(USER))[0]["action"] == "typing"
            server.press(USER, USER, up["callback_data"])
            (ack,) = await server.wait_for("answerCallbackQuery")
            assert ack["text"] == "Thanks for the \N{THUMBS UP SIGN}!"
            server.press(USER, USER, down["callback_data"])  # a second tap changes it
            acks = await server.wait_for("answerCallbackQuery", count=2)
            assert acks[1]["text"] == "Changed to \N{THUMBS DOWN SIGN}."
            server.press(USER, USER, "rate:1:+1; DROP TABLE ratings")  # tampered
            acks = await server.wait_for("answerCallbackQuery", count=3)
            assert acks[2]["text"] == "Sorry, I do not recognise that button."
            server.message(USER, USER, "/neurons tiny")
            (photo,) = await server.wait_for("sendPhoto", to_chat(USER))
            assert photo["photo"].startswith(b"\x89PNG") and photo["caption"].startswith("tiny")
    chat.run(scenario)
    (rating,) = chat.rows(Rating)
    assert rating.value == -1
    request, neurons = chat.rows(RequestRow)
    assert (request.style, request.variant, request.outcome) == ("fable_fox", "fox", "ok")
    assert (neurons.command, neurons.style, neurons.outcome) == ("neurons", "tiny", "ok")


def test_admin_refusal_flooding_unknown_commands_and_ignored_updates(chat):
    async def scenario():
        core = chat.core(rate_burst=3, rate_per_minute=1)
        async with running(core) as server:
            server.message(USER, USER, "/temperature tiny 0.9")
            (refusal,) = await server.wait_for("sendMessage", to_chat(USER))
            assert refusal["text"].startswith("Sorry, only the bot's admins set a style's")
            server.message(ADMIN, ADMIN, "/temperature tiny 0.9")
            (done,) = await server.wait_for("sendMessage", to_chat(ADMIN))
            assert done["text"] == "Temperature of tiny set to 0.9 (was unset)."
            server.message(7, 7, "/nosuch")
            (unknown,) = await server.wait_for("sendMessage", to_chat(7))
            assert unknown["text"].startswith("Sorry, I do not know /nosuch.")
            assert "/tiny - A tiny test style" in unknown["text"]  # help follows
            for _ in range(6):  # user 8 floods: one "slow down", the rest unanswered
                server.message(8, 8, "/help")
            flood = await server.wait_for("sendMessage", to_chat(8), count=4)
            assert sum(m["text"].startswith("Slow down a little") for m in flood) == 1
            # Ignored: an edit, a command for another bot, plain text in a group.
            server.message(9, 9, "/tiny the", edited=True)
            server.message(-100, 9, "/tiny@otherbot the", chat_type="group")
            server.message(-100, 9, "just chatting", chat_type="group")
            server.message(-100, 9, "/tiny@stylebot_test the", chat_type="group")
            (group,) = await server.wait_for("sendMessage", to_chat(-100))
            assert group["text"].startswith("the")
            assert server.sent("sendMessage", to_chat(9)) == []
            assert len(server.sent("sendMessage", to_chat(8))) == 4
    chat.run(scenario)
    assert chat.count(RequestRow) == 1 + 1 + 1 + 6 + 1  # rejected ones included
    assert chat.count(RequestRow, RequestRow.outcome == "rate_limited") == 3
    (change,) = chat.rows(SettingChange)
    assert change.new_value == 0.9 and change.changed_by_user_id is not None


def test_a_failing_send_is_logged_and_answered_by_the_error_handler(chat, caplog):
    async def scenario():
        async with running(chat.core()) as server:
            server.fail_next["sendMessage"] = 1  # the reply fails; the apology does not
            server.message(USER, USER, "/help")
            failed, apology = await server.wait_for("sendMessage", to_chat(USER), count=2)
            assert failed["text"].startswith("I write text")
            assert apology["text"] == "Sorry, something went wrong on my side. " \
                                      "Please try again in a moment."
    chat.run(scenario)
    assert "telegram update failed" in caplog.text and "Injected failure" in caplog.text
    assert chat.count(RequestRow) == 1


def test_long_texts_are_split_and_pictures_sent(chat):
    async def scenario():
        server = await FakeTelegram().start()
        app = telegram.build_application(chat.core(), TOKEN, server.base_url)
        try:
            async with app:
                text = "\n".join(f"Line {i} of a long speech." for i in range(400))
                in_topic = telegram.Target(USER, thread_id=9, reply_to=3)
                await telegram.send_reply(app.bot, in_topic, Reply(text, rate_generation=5))
                await telegram.send_reply(app.bot, USER, Reply("neurons", photo=b"\x89PNG"))
                await telegram.send_reply(app.bot, USER, Reply("", silent=True))
        finally:
            await server.stop()
        parts = server.sent("sendMessage")
        assert len(parts) == 3 and all(len(p["text"]) <= 4096 for p in parts)
        assert "\n".join(p["text"] for p in parts) == text
        assert [("reply_markup" in p) for p in parts] == [False, False, True]
        assert [p["message_thread_id"] for p in parts] == [9, 9, 9]  # all in the topic
        assert [p.get("reply_parameters", {}).get("message_id") for p in parts] == [
            3, None, None]  # the first part answers the command
        emoji = "\N{THUMBS UP SIGN}" * 3000  # 3000 characters, 6000 UTF-16 units
        assert [len(p) for p in telegram.message_parts(emoji)] == [2048, 952]
        (photo,) = server.sent("sendPhoto")
        assert photo["caption"] == "neurons" and photo["photo"] == b"\x89PNG"
    chat.run(scenario)


def test_a_bad_token_fails_at_start_with_a_clear_error(chat):
    async def scenario():
        server = await FakeTelegram().start()
        try:
            stop = asyncio.Event()
            try:
                await telegram.serve(chat.core(), "999:wrong", stop, base_url=server.base_url)
            except Exception as exc:  # PTB's InvalidToken
                assert "rejected by the server" in str(exc) or "Unauthorized" in str(exc)
            else:
                raise AssertionError("serve accepted a bad token")
        finally:
            await server.stop()
    chat.run(scenario)


def test_webhook_mode_receives_updates_over_http(chat, monkeypatch):
    import dataclasses
    import socket

    import aiohttp

    with socket.socket() as s:  # a free port for the webhook listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")

    async def scenario():
        core = chat.core()
        core.settings = dataclasses.replace(
            core.settings, telegram_mode="webhook", telegram_port=port,
            telegram_webhook_url="https://bot.example.org/hook/tg")
        server = await FakeTelegram().start()
        stop = asyncio.Event()
        task = asyncio.create_task(telegram.serve(core, TOKEN, stop,
                                                  base_url=server.base_url))
        try:
            (hook,) = await server.wait_for("setWebhook")
            assert hook["url"] == "https://bot.example.org/hook/tg"
            assert hook["secret_token"] == "s3cret"
            update = {"update_id": 1, "message": {
                "message_id": 5, "date": 0, "text": "/tiny the",
                "chat": {"id": USER, "type": "private", "first_name": "u"},
                "from": {"id": USER, "is_bot": False, "first_name": "u"},
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}}
            url = f"http://127.0.0.1:{port}/hook/tg"
            async with aiohttp.ClientSession() as http:
                forged = await http.post(url, json=update)
                assert forged.status == 403  # no secret: refused
                bad = await http.post(url, data=b"{not json",
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
                assert bad.status == 400
                ok = await http.post(url, json=update,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
                assert ok.status == 200
            (reply,) = await server.wait_for("sendMessage", to_chat(USER))
            assert reply["text"].startswith("the")
            assert server.sent("getUpdates") == []  # no polling in webhook mode
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
            await server.stop()
    chat.run(scenario)
    assert chat.count(RequestRow) == 1


def test_admins_are_told_in_private_when_a_training_run_finishes(chat, caplog):
    from runs import PROMOTED, finished_run

    from bot.notices import RunWatcher, watch_training

    async def scenario():
        # "0x" is no Telegram id: its send fails, is logged, and the real admin still hears.
        core = chat.core(admins={"telegram": frozenset({"0x", str(ADMIN)})})
        async with running(core) as server:
            stop, watcher = asyncio.Event(), RunWatcher()
            task = asyncio.create_task(watch_training(core, stop, 0.02, watcher))
            try:
                for _ in range(6000):
                    if watcher.ready:
                        break
                    await asyncio.sleep(0.01)
                await core.db.run(finished_run)
                (notice,) = await server.wait_for("sendMessage", to_chat(ADMIN))
                assert notice["text"] == PROMOTED and "reply_markup" not in notice
                assert server.sent("sendMessage", to_chat(USER)) == []
            finally:
                stop.set()
                await task
        assert core.notifiers == []  # unregistered when the adapter stopped
    chat.run(scenario)
    assert "notice to admin 0x not sent" in caplog.text
