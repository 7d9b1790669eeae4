"""`python -m bot console` answers a scripted session on piped stdin and never crashes."""
from __future__ import annotations

import subprocess
import sys

from genmodels.registry import activate
from storage.__main__ import upgrade

EXTRA = """
[inference]
backend = "numpy"

[admins]
console = ["local"]
"""


def test_a_scripted_console_session(make_bot, env_for, tmp_path):
    bot = make_bot(tmp_path / "bot", edit=lambda toml: toml + EXTRA)
    registry = tmp_path / "registry"
    art = bot.save_artifact("tiny")
    art.save(registry / "tiny" / "v1")
    activate("tiny", "v1", root=registry)
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(url)
    script = "\n".join(["/tiny the cat", "/rate up", "/rate down", "/nosuch",
                        "/fable bear", "/fable owl", "/temperature banana", "",
                        "/tiny@otherbot x", "/stats", "plain words"]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console"], input=script, capture_output=True,
        text=True, timeout=120, cwd=tmp_path,
        env=env_for(bot.config, DATABASE_URL=url, MODEL_REGISTRY=str(registry)))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    head, _, answers = out.partition("Ctrl-D quits.\n")
    assert "/fable - A fox fable [fox|owl]" in head and "/rate - " in head
    lines = answers.splitlines()
    assert lines[0].startswith("the cat")
    assert "(rate it: /rate up or /rate down)" in lines
    assert "Thanks for the \N{THUMBS UP SIGN}!" in lines
    assert "Changed to \N{THUMBS DOWN SIGN}." in lines
    assert "Sorry, I do not know /nosuch." in lines
    assert any("Unknown fable variant 'bear'; choose one of fox, owl" in x for x in lines)
    assert "Sorry, the fable_owl model is unavailable." in lines
    assert any(x.startswith("The temperature must be 0 (always the likeliest letter) or a number "
               "from 0.05 to 5") for x in lines)
    # /tiny@otherbot: the console has no bot name, so every command is its own.
    assert any(x.startswith("  tiny: 2 (2/0/0)") for x in lines), answers  # /stats: admin
    assert "Start with a command, e.g. /tiny." in lines


def test_bad_arguments_and_missing_tokens_get_one_line(make_bot, env_for, tmp_path):
    bot = make_bot(tmp_path / "bot")
    env = env_for(bot.config, TELEGRAM_TOKEN="")
    for args, message in ((["telegram"], "bot: TELEGRAM_TOKEN is not set in the environment"),
                          (["fax"], "bot: unknown adapter 'fax'")):
        proc = subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True,
                              text=True, timeout=60, env=env, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith(message), proc.stderr


def test_adapters_follow_the_tokens_in_the_environment():
    from bot.__main__ import choose

    assert choose([], {}) == ["console"]
    assert choose([], {"TELEGRAM_TOKEN": "t", "DISCORD_TOKEN": ""}) == ["telegram"]
    assert choose([], {"TELEGRAM_TOKEN": "t", "DISCORD_TOKEN": "d"}) == ["telegram", "discord"]
    assert choose(["console"], {"TELEGRAM_TOKEN": "t"}) == ["console"]
