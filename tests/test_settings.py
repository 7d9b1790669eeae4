"""config.toml read once into typed, frozen tables: unknown keys and wrong types refused
with the key named, the shipped file accepted, one parse per process.

    .venv/bin/python -m pytest -q tests/test_settings.py
"""
from __future__ import annotations

import dataclasses
import os

import pytest

import settings
import settings.reading
from bot.adapters.discord import load_discord_settings
from bot.settings import load_settings
from genmodels.config import ModelConfig, TrainConfig
from genmodels.styles import ConfigError, load_styles
from serving.config import inference_settings
from settings import schema
from storage import bandit
from storage.engine import database_url
from storage.errors import StorageConfigError
from training.schedule_config import ScheduleConfig, StylePlan, load_schedule

STYLE = """\
command = "one"
corpus = "one.txt"
description = "first"
default_chars = 10
max_chars = 20
"""

# (config text, the key the message must start with): one typo per table.
UNKNOWN = {
    "sampling": ("[sampling]\ntemprature = 0.9\n", "sampling.temprature"),
    "database": ('[database]\nurll = "x"\n', "database.urll"),
    "training": ("[training]\nminuts = 3\n", "training.minuts"),
    "model": ("[model]\nhiden = 3\n", "model.hiden"),
    "style": (f"[styles.one]\n{STYLE}colour = 1\n", "styles.one.colour"),
    "style training": (f"[styles.one]\n{STYLE}training = {{ minuts = 3 }}\n",
                       "styles.one.training.minuts"),
    "style model": (f"[styles.one]\n{STYLE}model = {{ hiden = 3 }}\n", "styles.one.model.hiden"),
    "base": ('[bases.en]\nstyles = ["one"]\nsources = 1\n', "bases.en.sources"),
    "base training": ('[bases.en]\nstyles = ["one"]\ntraining = { minuts = 3 }\n',
                      "bases.en.training.minuts"),
    "base model": ('[bases.en]\nstyles = ["one"]\nmodel = { hiden = 3 }\n',
                   "bases.en.model.hiden"),
    "bot": ("[bot]\nmax_inflight = 3\n", "bot.max_inflight"),
    "rate_limit": ("[rate_limit]\nbrust = 3\n", "rate_limit.brust"),
    "admins": ("[admins]\nmatrix = []\n", "admins.matrix"),
    "telegram": ('[telegram]\ntoken = "x"\n', "telegram.token"),
    "discord": ('[discord]\ntoken = "x"\n', "discord.token"),
    "schedule": ('[schedule]\ncorn = "x"\n', "schedule.corn"),
    "schedule style": ("[schedule.styles.one]\nmargn = 1\n", "schedule.styles.one.margn"),
    "bandit": ("[bandit]\nexplor = 0.9\n", "bandit.explor"),
    "inference": ('[inference]\nurll = "x"\n', "inference.urll"),
    "a table": ("[telegarm]\nmode = 1\n", "telegarm"),
}


def _write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", UNKNOWN)
def test_an_unknown_key_in_any_table_is_refused_by_name(tmp_path, case):
    text, key = UNKNOWN[case]
    with pytest.raises(ConfigError) as info:
        settings.load(_write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(f"{key}: unknown key (known: "), message
    assert "\n" not in message


def test_every_reader_refuses_a_typo_anywhere_in_the_file(tmp_path, make_bot):
    """Each table's reader checks the whole file: no reader takes a typo silently."""
    bot = make_bot(tmp_path / "bot", lambda t: t.replace("top_k = 0", "temprature = 0.9"))
    readers = [load_styles, load_settings, load_discord_settings, inference_settings,
               load_schedule, bandit.load_config, lambda p: database_url({}, p)]
    for read in readers:
        with pytest.raises(ConfigError, match=r"^sampling\.temprature: unknown key"):
            read(bot.config)
    for read, typo in [(bandit.load_config, "[bandit]\nexplor = 0.9\n"),
                       (lambda p: database_url({}, p), '[database]\nurll = "x"\n')]:
        with pytest.raises(StorageConfigError, match=r"^(bandit\.explor|database\.urll):"):
            read(_write(tmp_path, typo))
    with pytest.raises(ValueError, match=r"^inference\.urll: unknown key"):
        inference_settings(_write(tmp_path, '[inference]\nurll = "x"\n'))


WRONG_TYPES = [
    ('[bot]\nmax_in_flight = "many"\n', "bot.max_in_flight: must be a number (int), got 'many'"),
    ("[rate_limit]\nburst = true\n", "rate_limit.burst: must be a number (float), got True"),
    ("[discord]\nmessage_content = 1\n", "discord.message_content: must be true or false, got 1"),
    ('[discord]\nprefixes = "!"\n', "discord.prefixes: must be a list of strings, got '!'"),
    ('[bandit]\ntemperatures = [0.5, "hot"]\n',
     "bandit.temperatures[1]: must be a number (float), got 'hot'"),
    ('[admins]\ntelegram = "12"\n',
     "admins.telegram: must be a list of strings or numbers (int), got '12'"),
    ("[inference]\nurl = 5\n", "inference.url: must be a string, got 5"),
    ("[inference]\nblas_threads = 1.5\n",
     "inference.blas_threads: must be a string or a number (int), got 1.5"),
    ('[database]\nurl = ""\n', "database.url: must be a non-empty string, got ''"),
    ("[schedule.styles.one]\nscratch = 1\n", "schedule.styles.one.scratch: must be true or false, got 1"),
    (f'[styles.one]\n{STYLE.replace("max_chars = 20", "max_chars = 2.5")}',
     "styles.one.max_chars: must be a number (int), got 2.5"),
    ("[styles.one]\ncommand = 1\n", "styles.one.command: must be a string, got 1"),
    ('[styles.one]\ncommand = "one"\n', "styles.one.corpus: required key missing"),
    ("[bases]\nen = 5\n", "bases.en: must be a table, got 5"),
    ("sampling = 5\n", "sampling: must be a table, got 5"),
]


@pytest.mark.parametrize("text, message", WRONG_TYPES)
def test_a_wrong_type_names_the_key_and_the_expected_type(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        settings.load(_write(tmp_path, text))
    assert str(info.value) == message


def test_the_shipped_config_is_accepted_by_every_reader():
    config = settings.load(settings.DEFAULT_CONFIG)
    assert config.styles and config.bases and config.inference.max_batch > 0
    assert load_settings(settings.DEFAULT_CONFIG).admin_ids("console") == {"local"}
    assert load_discord_settings(settings.DEFAULT_CONFIG).prefixes == ("!", "/")
    assert inference_settings(settings.DEFAULT_CONFIG)["url"] == ""
    assert len(bandit.load_config(settings.DEFAULT_CONFIG).temperatures) >= 2


def test_tables_are_frozen():
    config = settings.load(settings.DEFAULT_CONFIG)
    with pytest.raises(AttributeError):
        config.bandit.explore = 1.0  # type: ignore[misc]


def test_the_schema_lists_the_fields_of_the_dataclasses_it_overrides():
    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert set(schema.Model.__struct_fields__) == names(ModelConfig) - {"vocab_size"}
    assert set(schema.Training.__struct_fields__) == names(TrainConfig)
    assert set(schema.Plan.__struct_fields__) == names(StylePlan)
    assert set(schema.Schedule.__struct_fields__) == (
        names(StylePlan) | names(ScheduleConfig) - {"default"})


def test_the_file_is_parsed_once_per_process(make_bot, tmp_path, monkeypatch):
    bot = make_bot(tmp_path / "bot")
    parses, reads = [], []
    real_parse, real_read = settings.reading._parse, settings.reading._read
    monkeypatch.setattr(settings.reading, "_parse",
                        lambda *a: parses.append(a) or real_parse(*a))
    monkeypatch.setattr(settings.reading, "_read", lambda p: reads.append(p) or real_read(p))
    monkeypatch.setenv("BOT_CONFIG", str(bot.config))
    for _ in range(2):
        load_styles(), load_settings(), load_discord_settings(), inference_settings()
        load_schedule(), bandit.load_config(), database_url({})
    assert len(parses) == 1
    # A file older than a clock tick is trusted by its size and mtime: not even read.
    old = bot.config.stat().st_mtime - 60
    os.utime(bot.config, (old, old))
    reads.clear()
    load_styles(), load_settings(), bandit.load_config()
    assert len(parses) == 1 and len(reads) == 1  # the new mtime once, then trusted


def test_a_rewritten_file_is_read_again(tmp_path):
    path = _write(tmp_path, "[bandit]\nexplore = 0.1\n")
    assert settings.load(path).bandit.explore == 0.1
    path.write_text("[bandit]\nexplore = 0.2\n", encoding="utf-8")  # same size, same tick
    assert settings.load(path).bandit.explore == 0.2
    other = tmp_path / "other.toml"
    other.write_text("[bandit]\nexplore = 0.3\n", encoding="utf-8")
    assert (settings.load(other).bandit.explore, settings.load(path).bandit.explore) == (
        0.3, 0.2)


def test_an_absent_file_is_refused_or_the_defaults(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        settings.load(tmp_path / "absent.toml")
    assert settings.load(tmp_path / "absent.toml", missing_ok=True) == schema.Config()


ENTRY_POINTS = [("bot", ["console"]), ("serving", []), ("training", ["train", "tiny"]),
                ("training.scheduler", ["--list"]), ("storage", ["url"]),
                ("genmodels", ["sample", "tiny"])]


@pytest.mark.parametrize("module, args", ENTRY_POINTS)
def test_a_typo_stops_each_program_with_one_line_naming_the_key(make_bot, tmp_path, run_cli,
                                                               bad_input, module, args):
    bot = make_bot(tmp_path / "bot", lambda t: t.replace("top_k = 0", "temprature = 0.9"))
    proc = run_cli(module, args, config=bot.config, timeout=120)
    bad_input(proc, "sampling.temprature: unknown key")
