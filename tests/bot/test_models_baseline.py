"""/models STYLE: each version's held-out loss next to the style's n-gram baseline.

The baseline comes from ``training.ngram``'s cache only (never computed in the chat
process, never with TensorFlow), read on a worker thread like the command's database
work; without a cache entry the reply says how to compute it.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from bot import storage_work
from bot.core import Request
from storage.versions import promote_model_version, register_model_version
from training import corpus as corpora, ngram

ADMIN = "1"
ROOT = Path(__file__).resolve().parents[2]


def admin(text: str) -> Request:
    return Request("telegram", "c1", ADMIN, user_name="admin", text=text,
                   bot_username="stylebot")


def test_without_a_cached_baseline_the_reply_says_how_to_compute_it(chat, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")

    async def scenario():
        core = chat.core()
        text = (await core.handle(admin("/models tiny"))).text
        assert text.splitlines()[0].startswith("tiny (serving: ")
        assert text.splitlines()[1:] == [
            "  baseline not computed (python -m training baseline tiny)",
            "  no versions registered"]
        every = (await core.handle(admin("/models"))).text  # an empty corpus too
        assert "  baseline not computed (python -m training baseline empty)" in every
    chat.run(scenario)


def _register(session, version, path, val_loss, active):
    register_model_version(session, style="tiny", version=version, artifact_path=str(path),
                           val_loss=val_loss)
    if active:
        promote_model_version(session, version)


def test_each_version_shows_the_baseline_and_its_margin(chat, tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    book = chat.book
    nats = ngram.baseline(book.get("tiny"), book)  # what `training baseline tiny` stores
    best = min(nats, key=nats.get)
    b = nats[best]

    def no_model(*args, **kw):
        raise AssertionError("the bot computed an n-gram model")

    monkeypatch.setattr(ngram, "KneserNey", no_model)
    threads = []
    real = storage_work.best_cached

    def spy(style, book):
        threads.append(threading.get_ident())
        return real(style, book)

    monkeypatch.setattr(storage_work, "best_cached", spy)
    registry = tmp_path / "registry"
    for seed, version in enumerate(("tiny-v1", "tiny-v2")):
        chat.setup.save_artifact("tiny", seed=seed).save(registry / "tiny" / version)

    async def scenario():
        core = chat.core()
        for version, val, active in (("tiny-v1", b + 0.02, False), ("tiny-v2", b - 0.1, True)):
            await core.db.run(_register, version, registry / "tiny" / version, val, active)
        lines = (await core.handle(admin("/models tiny"))).text.splitlines()
        assert lines[1] == f"  n-gram baseline {b:.4f} nats/char (order {best})"
        (v2,) = [line for line in lines if "tiny-v2" in line]
        (v1,) = [line for line in lines if "tiny-v1" in line]
        assert f"val {b - 0.1:.4f} nats/char" in v2
        assert v2.endswith(f"; n-gram {b:.4f}, margin +0.1000")
        assert v1.endswith(f"; n-gram {b:.4f}, margin -0.0200")
        assert threads and threading.get_ident() not in threads  # off the event loop
    chat.run(scenario)


def test_the_chat_commands_import_no_tensorflow():
    code = ("import sys, bot.commands; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
