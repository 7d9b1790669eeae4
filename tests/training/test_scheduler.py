"""The scheduler with the real APScheduler and a real job store (SQLite, and PostgreSQL
when one answers): jobs survive a restart without doubling, keep a missed run for the
misfire grace time, follow config changes; the poll job runs queued /retrain requests;
the CLI lists jobs and answers bad input in one line."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from storage.__main__ import upgrade
from storage.engine import make_engine, session_factory
from storage.models import TrainingRun
from tests.databases import BACKENDS, migrated
from training.registry_ops import queue_retrain
from training.scheduler import StyleScheduler

STYLE_JOBS = {"retrain:tiny", "retrain:fable_fox", "retrain:fable_owl", "retrain:empty"}
ALL_JOBS = STYLE_JOBS | {"poll-queue", "bandit-nightly"}


def with_schedule(extra: str):
    return lambda toml: toml + "\n[schedule]\njitter_seconds = 60\n" + extra

@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    yield from migrated(request.param, tmp_path, "sched")


def test_jobs_persist_across_a_restart_and_are_not_doubled(url, tmp_path, make_bot):
    bot = make_bot(tmp_path / "bot", with_schedule('[schedule.styles.tiny]\ncron = "0 2 * * *"'))
    first = StyleScheduler(url, bot.config)
    first.start(paused=True)
    jobs = {j.id: j for j in first.jobs()}
    assert set(jobs) == ALL_JOBS
    tiny = jobs["retrain:tiny"]
    assert (tiny.max_instances, tiny.coalesce, tiny.misfire_grace_time) == (1, True, 3600)
    assert tiny.trigger.fields[5].expressions[0].first == 2  # hour 2 (the override)
    assert tiny.trigger.jitter == 60
    # The scheduler was down at the run time: the run is due and must not be lost.
    missed = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    tiny.modify(next_run_time=missed)
    first.shutdown()

    second = StyleScheduler(url, bot.config)
    second.scheduler.start(paused=True)  # what the store holds, before any re-sync
    assert {j.id for j in second.jobs()} == ALL_JOBS
    second.sync_jobs()  # what start() does: re-apply config.toml
    jobs = second.jobs()
    assert sorted(j.id for j in jobs) == sorted(ALL_JOBS)  # once each
    kept = {j.id: j for j in jobs}["retrain:tiny"].next_run_time
    assert kept == missed  # unchanged job: the missed run is still due (grace time)
    second.shutdown()


def test_config_changes_replace_and_remove_jobs(url, tmp_path, make_bot):
    bot = make_bot(tmp_path / "bot", with_schedule(""))
    sched = StyleScheduler(url, bot.config)
    sched.start(paused=True)
    sched.shutdown()
    bot = make_bot(tmp_path / "bot", with_schedule(
        '[schedule.styles.tiny]\ncron = "45 1 * * 0"\n'
        '[schedule.styles.empty]\nenabled = false\n'))
    sched = StyleScheduler(url, bot.config)
    sched.start(paused=True)
    jobs = {j.id: j for j in sched.jobs()}
    assert set(jobs) == ALL_JOBS - {"retrain:empty"}
    assert "day_of_week='0', hour='1', minute='45'" in str(jobs["retrain:tiny"].trigger)
    sched.shutdown()


def test_poll_job_runs_a_queued_retrain(tmp_path, make_bot):
    url = f"sqlite:///{tmp_path / 'poll.db'}"
    upgrade(url)
    bot = make_bot(tmp_path / "bot", with_schedule("poll_seconds = 1\n"))
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        run_id = queue_retrain(s, "nosuch")[0].id  # fails fast, without training
        now = dt.datetime.now(dt.UTC)
        # A run whose scheduler died two minutes ago, and one a live scheduler beats.
        stale = TrainingRun(style="tiny", trigger="schedule", status="running",
                            started_at=now - dt.timedelta(minutes=5),
                            heartbeat_at=now - dt.timedelta(minutes=2))
        alive = TrainingRun(style="empty", trigger="schedule", status="running",
                            started_at=now - dt.timedelta(minutes=5), heartbeat_at=now)
        s.add_all([stale, alive])
    sched = StyleScheduler(url, bot.config)
    sched.start()  # real, unpaused: the poll job fires every second
    try:
        status = "queued"
        for _ in range(300):
            with sessions.begin() as s:
                status = s.get(TrainingRun, run_id).status
            if status not in ("queued", "running"):
                break
            time.sleep(0.1)
    finally:
        sched.shutdown()
    with sessions.begin() as s:
        run = s.get(TrainingRun, run_id)
        assert (run.status, run.trigger) == ("failed", "admin")
        assert "unknown style 'nosuch'" in run.error
        # A run a crashed scheduler left "running" is failed at start-up; a run whose
        # heartbeat is fresh is not: starting is no evidence that its scheduler died.
        assert s.execute(select(TrainingRun.error).where(TrainingRun.id == stale.id)) \
            .scalar_one() == "interrupted: its scheduler stopped beating for over 60 s"
        assert s.get(TrainingRun, alive.id).status == "running"
    engine.dispose()


def test_cli_lists_jobs_and_refuses_bad_input(tmp_path, make_bot, run_cli, bad_input):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    bot = make_bot(tmp_path / "bot", with_schedule(""))
    proc = run_cli("training.scheduler", ["--list"], config=bot.config, DATABASE_URL=url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("jobs in sqlite:///")
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(ALL_JOBS)
    again = run_cli("training.scheduler", ["--list"], config=bot.config, DATABASE_URL=url)
    assert again.stdout == proc.stdout  # a restart re-applies the config, nothing moves
    bad_input(run_cli("training.scheduler", ["--run-now", "nosuch"], config=bot.config,
                      DATABASE_URL=url), "unknown style 'nosuch'")
    bad_input(run_cli("training.scheduler", ["--minutes", "2"], config=bot.config,
                      DATABASE_URL=url), "--minutes needs --run-now")
    broken = make_bot(tmp_path / "bad", with_schedule('cron = "at three"'))
    bad_input(run_cli("training.scheduler", ["--list"], config=broken.config,
                      DATABASE_URL=url), "schedule.cron: bad cron expression")


def test_the_bot_can_host_it_on_its_event_loop(tmp_path, make_bot):
    import asyncio

    url = f"sqlite:///{tmp_path / 'loop.db'}"
    upgrade(url)
    bot = make_bot(tmp_path / "bot", with_schedule(""))

    async def host():
        sched = StyleScheduler(url, bot.config, asyncio=True)
        sched.start(paused=True)
        ids = {j.id for j in sched.jobs()}
        sched.shutdown()
        return ids

    assert asyncio.run(host()) == ALL_JOBS


def test_cli_run_now_trains_publishes_and_exits(tmp_path, make_bot, run_cli):
    pytest.importorskip("tensorflow")
    url = f"sqlite:///{tmp_path / 'now.db'}"
    upgrade(url)
    bot = make_bot(tmp_path / "bot", with_schedule(""))
    registry_root = tmp_path / "registry"
    proc = run_cli("training.scheduler", ["--run-now", "tiny", "--minutes", "0.02"],
                   config=bot.config, timeout=600, DATABASE_URL=url,
                   MODEL_REGISTRY=str(registry_root), CORPUS_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    # No model yet (nothing shipped for the tiny style): the first candidate is served.
    [line] = proc.stdout.strip().splitlines()
    assert line.startswith("retrain tiny: val loss ? -> ") and "promoted, now serving" in line
    version = (registry_root / "tiny" / "ACTIVE").read_text().strip()
    assert version in line and (registry_root / "tiny" / version / "model.json").is_file()
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        run = s.execute(select(TrainingRun)).scalar_one()
        assert (run.status, run.trigger, run.model_version) == ("succeeded", "manual", version)
    engine.dispose()


def test_schedule_config_errors_name_the_key(tmp_path, make_bot):
    from genmodels.styles import ConfigError
    from training.schedule_config import load_schedule

    for extra, key in [("margin = -1\n", "schedule.margin"),
                       ("keep = 0\n", "schedule.keep"),
                       ("colour = 1\n", "schedule.colour"),
                       ("heartbeat_seconds = 30\n", "schedule.heartbeat_seconds"),
                       ("[schedule.styles.nosuch]\n", "schedule.styles.nosuch"),
                       ('[schedule.styles.tiny]\nminutes = "5"\n', "schedule.styles.tiny.minutes"),
                       ("[schedule.styles.tiny]\nscratch = 1\n", "schedule.styles.tiny.scratch")]:
        bot = make_bot(tmp_path / "bot", with_schedule(extra))
        with pytest.raises(ConfigError, match=f"^{key}"):
            load_schedule(bot.config)
    book, schedule = load_schedule(make_bot(tmp_path / "ok", with_schedule(
        "minutes = 2\n[schedule.styles.tiny]\nmargin = 0.1\n")).config)
    assert schedule.for_style("tiny").margin == 0.1 and schedule.for_style("tiny").minutes == 2
    assert schedule.for_style("fable_owl").margin == 0.005
