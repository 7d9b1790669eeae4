"""The retrain job end to end with real training subprocesses on a tiny style.

The style starts with a random "shipped" model. A short fine-tune must beat it and be
promoted; a one-step model trained from scratch must be refused by the gate; a killed or
timed-out training leaves the active model serving and its run marked failed. The
database is a real SQLite file migrated with Alembic; the registry, corpus cache and
checkpoints live under the test's temporary folder.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from sqlalchemy import select

from genmodels import registry
from genmodels.artifact import load
from storage.__main__ import upgrade
from storage.engine import make_engine, session_factory
from storage.models import ModelVersion, TrainingRun
from storage.versions import active_model_version, start_training_run
from tests.training.test_lease import take_over
from training import retrain as retrain_mod
from training.retrain import Retrainer
from training.schedule_config import ScheduleConfig, StylePlan

pytest.importorskip("tensorflow")
TRAIN = StylePlan(minutes=0.5, margin=0.01, keep=3, learning_rate_scale=3.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_bot):
    root = tmp_path_factory.mktemp("retrain")
    bot = make_bot(root / "bot")
    # Small random weights (about uniform predictions), shaped like the tiny config's
    # model, so a short fine-tune learns as fast as a run from scratch does.
    shipped = bot.save_artifact("tiny", seed=3, hidden=16, embed_dim=8, n_layers=1,
                                scale=0.1)
    url = f"sqlite:///{root / 'bot.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    heard = []
    retrain_mod.add_notifier(heard.append)
    yield dict(bot=bot, book=bot.book(), root=root / "registry", sessions=sessions,
               shipped=shipped, heard=heard, env={"CORPUS_CACHE": str(root / "cache")})
    retrain_mod.remove_notifier(heard.append)
    engine.dispose()


def retrainer(world, plan: StylePlan, slack: int = 300) -> Retrainer:
    schedule = ScheduleConfig(timeout_slack_seconds=slack, styles={"tiny": plan})
    return Retrainer(world["sessions"], world["book"], schedule, root=world["root"],
                     env=world["env"])


def active(world) -> tuple[str, str]:
    """(DB active version, what serving would load) for style tiny."""
    with world["sessions"].begin() as s:
        row = active_model_version(s, "tiny")
    path = registry.active_path("tiny", shipped=world["bot"].models, root=world["root"])
    return row.version, load(path).version


def run_row(world, run_id: int) -> TrainingRun:
    with world["sessions"].begin() as s:
        return s.get(TrainingRun, run_id)


def test_a_better_candidate_is_promoted(world):
    result = retrainer(world, TRAIN).run("tiny", trigger="schedule")
    assert result.outcome == "promoted", result
    shipped = world["shipped"].version
    assert result.old_version == shipped and result.new_version != shipped
    assert result.new_val <= result.old_val - TRAIN.margin
    assert active(world) == (result.new_version, result.new_version)
    new = load(world["root"] / "tiny" / result.new_version)
    assert new.parent_version == shipped  # fine-tuned from the active version
    with world["sessions"].begin() as s:
        rows = {r.version: r for r in s.execute(select(ModelVersion)).scalars()}
    assert rows[shipped].status == "retired" and rows[shipped].promoted_at is not None
    assert rows[result.new_version].val_loss == pytest.approx(result.new_val)
    run = run_row(world, result.run_id)
    assert (run.status, run.trigger, run.model_version) == ("succeeded", "schedule",
                                                             result.new_version)
    assert run.metrics["outcome"] == "promoted" and run.error is None
    assert world["heard"][-1] is result and "promoted, now serving" in result.message()
    assert not [p for p in (world["root"] / "tiny").glob(".work-*")]


def test_a_worse_candidate_is_refused(world):
    before = active(world)
    # One step from random weights cannot match a model trained for 30 s.
    plan = StylePlan(minutes=0.01, margin=0.01, keep=3, scratch=True)
    result = retrainer(world, plan).run("tiny", trigger="manual")
    assert result.outcome == "refused", result
    assert result.new_val > result.old_val - plan.margin
    assert active(world) == before  # still serving the promoted version
    with world["sessions"].begin() as s:
        row = s.execute(select(ModelVersion).where(
            ModelVersion.version == result.new_version)).scalar_one()
    assert (row.status, row.promoted_at) == ("retired", None)  # a retired candidate
    assert (world["root"] / "tiny" / result.new_version / "model.json").is_file()
    assert run_row(world, result.run_id).metrics["outcome"] == "refused"
    assert "refused by the gate" in world["heard"][-1].message()


def wait_for_child(job: Retrainer, thread: threading.Thread):
    for _ in range(600):
        if job.child is not None or not thread.is_alive():
            return job.child
        time.sleep(0.05)
    return None


def test_a_killed_training_leaves_the_active_model(world):
    before = active(world)
    corpus = world["book"].get("tiny").corpus
    # A logged change. Its characters are all in the corpus already: a fine-tune cannot
    # use characters its parent's vocabulary lacks, and the timed-out run below must
    # fail by its timeout, not by that error.
    corpus.write_text(corpus.read_text() + "the old dog sat on the hot mat.\n")
    job = retrainer(world, TRAIN)
    results = []
    thread = threading.Thread(target=lambda: results.append(job.run("tiny")))
    thread.start()
    child = wait_for_child(job, thread)
    assert child is not None
    os.kill(child.pid, signal.SIGKILL)
    thread.join(timeout=120)
    [result] = results
    assert result.outcome == "failed" and result.corpus_changed
    assert result.error == "RetrainError: train was killed (signal 9)"
    assert active(world) == before
    run = run_row(world, result.run_id)
    assert (run.status, run.error) == ("failed", result.error)
    assert not list((world["root"] / "tiny").glob(".work-*"))
    assert world["heard"][-1].message() == f"retrain tiny failed: {result.error}"


def test_a_run_taken_over_by_another_worker_ends_and_records_nothing(world):
    before, heard = active(world), len(world["heard"])
    schedule = ScheduleConfig(timeout_slack_seconds=300, heartbeat_seconds=0.1,
                              styles={"tiny": TRAIN})
    job = Retrainer(world["sessions"], world["book"], schedule, root=world["root"],
                    env=world["env"])
    with world["sessions"].begin() as s:
        run_id = start_training_run(s, style="tiny", trigger="admin").id
    results = []
    thread = threading.Thread(target=lambda: results.append(job.run("tiny", run_id=run_id)))
    thread.start()
    assert wait_for_child(job, thread) is not None
    take_over(world["sessions"], run_id)  # this worker looked dead to another one
    thread.join(timeout=120)
    [result] = results
    assert result.outcome == "failed"
    assert result.error == "RetrainError: train was killed (signal 15)"
    run = run_row(world, run_id)  # still the new attempt's: not finished by the old one
    assert (run.status, run.metrics, run.model_version) == ("running", {"attempt": 2}, None)
    assert active(world) == before
    assert len(world["heard"]) == heard  # nobody is told of a run that is not over
    with world["sessions"].begin() as s:  # the later tests read every finished run
        s.delete(s.get(TrainingRun, run_id))


def test_a_timed_out_training_is_killed_and_marked_failed(world):
    before = active(world)
    with world["sessions"].begin() as s:
        n_versions = len(s.execute(select(ModelVersion)).all())
    # The child cannot finish: its own budget (3 s) alone equals the timeout.
    result = retrainer(world, StylePlan(minutes=0.05), slack=0).run("tiny")
    assert result.outcome == "failed"
    assert result.error == "RetrainError: train timed out after 3 s and was killed"
    assert active(world) == before
    with world["sessions"].begin() as s:
        assert len(s.execute(select(ModelVersion)).all()) == n_versions
    assert run_row(world, result.run_id).status == "failed"


def test_an_unknown_style_fails_its_run(world):
    result = retrainer(world, TRAIN).run("nosuch", trigger="admin")
    assert result.outcome == "failed" and "unknown style 'nosuch'" in result.error
    assert run_row(world, result.run_id).status == "failed"


def test_training_cli_options_the_job_uses_are_checked(world, run_cli, bad_input):
    config = world["bot"].config
    bad_input(run_cli("training", ["train", "tiny", "--init", "x", "--scratch"],
                      config=config), "--init and --scratch exclude each other")
    bad_input(run_cli("training", ["train", "tiny", "--learning-rate", "0"], config=config),
              "--learning-rate must be positive")
    bad_input(run_cli("training", ["train", "tiny", "--init", str(world["root"] / "nope")],
                      config=config, CORPUS_CACHE=world["env"]["CORPUS_CACHE"]), "nope")


def test_another_process_hears_about_finished_runs_from_the_table(world):
    from training.registry_ops import finished_runs
    from training.retrain import RunResult

    with world["sessions"].begin() as s:
        runs = finished_runs(s)
    heard = [r.message() for r in world["heard"]]
    assert [RunResult.from_row(r).message() for r in runs] == heard
    with world["sessions"].begin() as s:
        assert finished_runs(s, after_id=runs[-1].id) == []


def test_a_corpus_that_gains_characters_is_fine_tuned_over_a_wider_vocabulary(world):
    before = active(world)[0]
    old = load(registry.active_path("tiny", shipped=world["bot"].models, root=world["root"]))
    corpus = world["book"].get("tiny").corpus
    # In the training part (the start) and the held-out part (the end).
    line = "five fine frogs jump.\n"
    corpus.write_text(line * 3 + corpus.read_text() + line)
    assert not set("fjpv") & set(old.vocab.chars)
    result = retrainer(world, TRAIN).run("tiny")
    # Without widening, the fine-tune and the scoring of the active version both stop
    # at "character 'f' is not in the vocabulary" and the run fails.
    assert result.outcome in ("promoted", "refused"), result
    assert result.corpus_changed and result.old_version == before
    assert 0 < result.old_val < 10 and 0 < result.new_val < 10  # both scored, finitely
    assert (result.outcome == "promoted") == (result.new_val <= result.old_val - TRAIN.margin)
    new = load(world["root"] / "tiny" / result.new_version)
    assert new.parent_version == before  # fine-tuned, not trained from scratch
    assert set(new.vocab.chars) == set(old.vocab.chars) | set("fjpv")
