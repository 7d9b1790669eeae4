"""One retrain of one style: train a candidate in a subprocess, gate it, publish it.

    python -m training.scheduler --run-now austen [--minutes 2]   # runs ``Retrainer.run``

The steps, each leaving the served model untouched until the last:

1. a ``training_runs`` row (or the queued one ``/retrain`` made) is marked running;
2. the style's active version is found (the shipped ``models/STYLE`` is copied into the
   registry and registered the first time); a corpus whose sha256 differs from the one
   the active version was trained on is logged;
3. ``python -m training train STYLE --init ACTIVE --out WORK`` runs in a **subprocess**
   (TensorFlow never enters the scheduler or the bot) with a timeout of the budget plus
   a slack; a crash, a kill or a timeout marks the run failed with the error;
4. the active version is scored on the same held-out split the candidate was
   (``python -m training evaluate --model ACTIVE``), so a changed corpus cannot fool
   the gate; the candidate is **promoted only if its val loss is lower by at least
   the margin**, else it is kept as a retired candidate;
5. the candidate folder is renamed into ``var/models/STYLE/VERSION`` (atomic) and its
   sha256 recorded; with an object store (``[store] url``) it is uploaded there first.
   The DB rows change (and, on one machine, the ACTIVE marker is replaced) in one
   transaction, old local folders are pruned, and the notifiers hear a one-line summary.

While it runs, a thread renews the run's lease (``heartbeat_at``, training/lifecycle.py);
a process that loses it (cut off from the database past the lease, or the run taken
over) ends its child and records and publishes nothing. Every child is started so that
it dies with this process, even by ``kill -9``.
``stop()`` ends the running child and fails its run (the scheduler's SIGTERM). The
scratch folders of runs that are not running (``STYLE/.work-N``) are removed after
every run.

Settings come from config.toml ``[schedule]`` (see ``load_schedule``).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from genmodels import artifact as artifacts, registry
from genmodels.store import Store, digest, open_store
from genmodels.styles import StyleBook
from settings import ROOT
from storage.errors import InvalidInput
from storage.models import RunStatus
from storage.versions import (
    active_model_version,
    finish_training_run,
    register_model_version,
    retire_model_version,
    start_training_run,
)
from training import registry_ops
from training.lifecycle import Heartbeat, die_with_parent
from training.schedule_config import ScheduleConfig

log = logging.getLogger(__name__)
VAL_LINE = re.compile(r"val_loss_nats=([0-9.]+)")
EVAL_TIMEOUT_S = 600


class RetrainError(Exception):
    """A run failed; the message is what the training_runs row and the admins get."""


@dataclass
class RunResult:
    """What became of one run; ``message()`` is the line admins are sent."""

    run_id: int
    style: str
    outcome: str  # "promoted", "refused" or "failed"
    old_version: str | None = None
    new_version: str | None = None
    old_val: float | None = None
    new_val: float | None = None
    corpus_changed: bool = False
    error: str | None = None
    seconds: float = 0.0

    @classmethod
    def from_row(cls, run) -> RunResult:
        """Rebuild a finished run from its ``training_runs`` row (another process ran it)."""
        m = run.metrics or {}
        return cls(run.id, run.style, m.get("outcome", "failed"),
                   old_version=m.get("old_version"), new_version=run.model_version,
                   old_val=m.get("old_val_loss"), new_val=m.get("new_val_loss"),
                   corpus_changed=bool(m.get("corpus_changed")),
                   error=run.error, seconds=m.get("seconds", 0.0))

    def message(self) -> str:
        if self.outcome == "failed":
            return f"retrain {self.style} failed: {self.error}"
        fmt = lambda v: "?" if v is None else f"{v:.4f}"  # noqa: E731
        verdict = ("promoted, now serving" if self.outcome == "promoted"
                   else "refused by the gate, still serving " + str(self.old_version))
        note = " (corpus changed)" if self.corpus_changed else ""
        return (f"retrain {self.style}: val loss {fmt(self.old_val)} -> {fmt(self.new_val)} "
                f"nats/char, {self.new_version} {verdict}{note}")


Notifier = Callable[[RunResult], None]
_notifiers: list[Notifier] = []  # jobs are stored by reference, so hooks live here


def add_notifier(fn: Notifier) -> None:
    """Call ``fn(result)`` after every run in this process (the bot tells its admins)."""
    _notifiers.append(fn)


def remove_notifier(fn: Notifier) -> None:
    if fn in _notifiers:
        _notifiers.remove(fn)


@dataclass
class Active:
    version: str | None
    path: Path | None
    corpus_sha256: str | None = None


@dataclass
class Retrainer:
    """Runs retrains of the styles in ``book`` against the database of ``sessions``."""

    sessions: sessionmaker[Session]
    book: StyleBook
    schedule: ScheduleConfig
    root: Path | None = None  # the registry (default: genmodels.registry.registry_root())
    store: Store | None = None  # where versions are published (default: config.toml's)
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the children
    child: subprocess.Popen | None = None  # the training process while one runs
    stopping: threading.Event = field(default_factory=threading.Event)  # see stop()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def registry_root(self) -> Path:
        return self.root or registry.registry_root()

    @property
    def model_store(self) -> Store:
        if self.store is None:
            self.store = open_store(self.book.path)
        return self.store

    def run(self, style: str, trigger: str = "manual", run_id: int | None = None,
            minutes: float | None = None, by_user_id: int | None = None, attempt: int = 1,
            lease_s: float = registry_ops.LEASE_SECONDS) -> RunResult:
        """Retrain ``style`` now; never raises for a failed run (see ``RunResult``). A run
        whose lease is lost (training/lifecycle.py) ends without touching its row."""
        start, plan, error = time.monotonic(), None, None
        try:
            plan = self.schedule.for_style(self.book.get(style).name)
        except KeyError as exc:  # an unknown style queued by /retrain: fail its run
            error = str(exc.args[0])
        minutes = minutes or (plan.minutes if plan else None)
        if run_id is None:
            with self.sessions.begin() as s:
                run_id = start_training_run(s, style=style, trigger=trigger,
                                            budget_minutes=minutes,
                                            requested_by_user_id=by_user_id).id
        lease = Heartbeat(self.sessions, run_id, self.schedule.heartbeat_seconds, attempt,
                          lease_s, on_lost=self._end_child)
        if plan is None:
            result = RunResult(run_id, style, "failed", error=error)
        else:
            with self._lock, lease:
                result = self._attempt(run_id, style, plan, minutes, lease)
        result.seconds = time.monotonic() - start
        if not lease.lost.is_set():  # else the run is another attempt's, or failed
            self._finish(result)
        self.clean_work()
        return result

    def stop(self) -> None:
        """End the running child, if any, and start no other (SIGTERM to the scheduler).

        The run it belonged to ends as failed ("stopped") the usual way.
        """
        self.stopping.set()
        self._end_child()

    def _end_child(self) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()

    def clean_work(self) -> list[Path]:
        """Remove the scratch folders of runs that are not running; never raises."""
        try:
            with self.sessions.begin() as s:
                removed = registry_ops.clean_work(s, self.registry_root)
        except Exception as exc:  # noqa: BLE001 - a leftover folder is no reason to fail
            log.warning("scratch folders not cleaned: %s", exc)
            return []
        if removed:
            log.info("removed scratch folders %s", ", ".join(str(p) for p in removed))
        return removed

    def _attempt(self, run_id, style, plan, minutes, lease: Heartbeat) -> RunResult:
        work = self.registry_root / style / f".work-{run_id}"
        result = RunResult(run_id, style, "failed")
        try:
            active = self._ensure_active(style)
            result.old_version = active.version
            result.corpus_changed = self._corpus_changed(style, active)
            candidate = self._train(style, plan, minutes, active, work)
            result.new_version, result.new_val = candidate.version, _val(candidate)
            result.old_val = self._baseline(style, active)
            promote = result.old_val is None or result.new_val <= result.old_val - plan.margin
            self._publish(style, candidate, active, promote, lease)
            result.outcome = "promoted" if promote else "refused"
            removed = self._prune(style, plan.keep)
            if removed:
                log.info("%s: pruned %s", style, ", ".join(removed))
        except Exception as exc:  # noqa: BLE001 - any failure must end as a failed run
            result.error = _one_line(exc)
            log.warning("retrain %s (run %s) failed: %s", style, run_id, result.error)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return result

    # -- the active version -------------------------------------------------------------

    def _ensure_active(self, style: str) -> Active:
        """The active version, registering the served one first if the DB has none."""
        with self.sessions.begin() as s:
            row = active_model_version(s, style)
            if row is not None and registry_ops.on_disk(row, self.model_store):
                if registry_ops.remote(row):  # a local copy to train from and score
                    folder = registry_ops.fetch(row, self.model_store)
                else:
                    registry_ops.mark_active(row)  # the marker follows the database
                    folder = Path(row.artifact_path)
                art = artifacts.load(folder)
                return Active(row.version, folder, art.corpus.get("sha256"))
        served = registry.active_path(style, shipped=self.book.get(style).model_dir.parent,
                                      root=self.registry_root)
        try:
            art = artifacts.load(served)
        except artifacts.ArtifactError:
            return Active(None, None)  # nothing trained yet: the first candidate wins
        path = self.registry_root / style / art.version
        if not path.exists():  # the shipped model: copy it in, so rollback can reach it
            tmp = path.with_name(f".{art.version}.copy-{os.getpid()}")
            shutil.copytree(served, tmp, dirs_exist_ok=True)
            os.replace(tmp, path)
        where, sha = self._store(style, art.version, path)
        with self.sessions.begin() as s:
            register_model_version(s, style=style, version=art.version,
                                   artifact_path=where, val_loss=_val(art),
                                   parent_version=art.parent_version, sha256=sha)
            registry_ops.promote(s, art.version, self.registry_root, self.model_store)
        log.info("%s: registered the served model %s as active", style, art.version)
        return Active(art.version, path, art.corpus.get("sha256"))

    def _corpus_changed(self, style: str, active: Active) -> bool:
        from training.corpus import scan  # NumPy only; kept local to the one use

        sha, old = scan(self.book.get(style).corpus)[0], active.corpus_sha256
        if old is None or sha == old:
            return False
        log.info("%s: corpus changed since %s (sha256 %s -> %s)", style, active.version,
                 old[:12], sha[:12])
        return True

    # -- the children -------------------------------------------------------------------

    def _train(self, style, plan, minutes, active: Active, work: Path):
        out = work / "candidate"
        args = ["train", style, "--minutes", f"{minutes:g}", "--out", str(out)]
        if plan.scratch or active.path is None:
            args.append("--scratch")
        else:
            args += ["--init", str(active.path)]
            if plan.learning_rate_scale != 1:
                lr = self.book.get(style).training.learning_rate * plan.learning_rate_scale
                args += ["--learning-rate", f"{lr:g}"]
        timeout = minutes * 60 + self.schedule.timeout_slack_seconds
        self._child(args, timeout, {"TRAINING_RUNS": str(work / "runs")})
        return artifacts.load(out)

    def _baseline(self, style: str, active: Active) -> float | None:
        if active.path is None:
            return None
        # --widen-vocab: if the corpus gained characters, the active version is scored as
        # the candidate's starting point was (genmodels/widen.py), on the same text.
        out = self._child(["evaluate", style, "--model", str(active.path), "--widen-vocab"],
                          EVAL_TIMEOUT_S)
        found = VAL_LINE.findall(out)
        if not found:
            raise RetrainError(f"evaluate printed no val loss: {out.strip()[-200:]}")
        return float(found[-1])

    def _child(self, args: list[str], timeout: float, env: dict | None = None) -> str:
        """Run ``python -m training ARGS``; its stdout, or RetrainError saying why not."""
        cmd = [self.python, "-m", "training", *args]
        # The child reads the same config.toml as this process, whichever that is.
        child_env = (os.environ | {"PYTHONPATH": str(ROOT), "BOT_CONFIG": str(self.book.path)}
                     | self.env | (env or {}))
        if self.stopping.is_set():
            raise RetrainError(f"{args[0]} not started: the scheduler is stopping")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=die_with_parent())
        self.child = proc
        if self.stopping.is_set():  # stop() ran between the check and Popen
            proc.terminate()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RetrainError(f"{args[0]} timed out after {timeout:g} s and was killed") from None
        finally:
            self.child = None
        if self.stopping.is_set() and proc.returncode != 0:
            raise RetrainError(f"{args[0]} stopped: its scheduler or worker was asked to stop")
        if proc.returncode < 0:
            raise RetrainError(f"{args[0]} was killed (signal {-proc.returncode})")
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["no error output"])[-1]
            raise RetrainError(f"{args[0]} exited with status {proc.returncode}: {last}")
        return out

    # -- publishing ---------------------------------------------------------------------

    def _publish(self, style, candidate, active: Active, promote: bool,
                 lease: Heartbeat) -> None:
        """Rename the candidate into the registry, register it, maybe activate it: only
        while this process holds the run's lease (checked in the same transaction)."""
        path = self.registry_root / style / candidate.version
        os.replace(candidate.path, path)  # same file system: atomic
        where, sha = self._store(style, candidate.version, path)
        with self.sessions.begin() as s:
            lease.confirm(s)
            register_model_version(s, style=style, version=candidate.version,
                                   artifact_path=where, val_loss=_val(candidate),
                                   parent_version=active.version, sha256=sha)
            if promote:  # inside the transaction: without the marker nothing changes
                registry_ops.promote(s, candidate.version, self.registry_root,
                                     self.model_store)
            else:
                retire_model_version(s, candidate.version)

    def _store(self, style: str, version: str, path: Path) -> tuple[str, str]:
        """(where the row says the version is, its sha256): the folder itself on one
        machine; uploaded to the object store before any row names it otherwise."""
        sha = digest(path)
        return self.model_store.publish(path, style, version), sha

    def _prune(self, style: str, keep: int) -> list[str]:
        with self.sessions.begin() as s:
            return registry_ops.prune(s, style, keep, root=self.registry_root)

    def _finish(self, result: RunResult) -> None:
        status = RunStatus.FAILED if result.outcome == "failed" else RunStatus.SUCCEEDED
        metrics = {"outcome": result.outcome, "old_version": result.old_version,
                   "old_val_loss": result.old_val, "new_val_loss": result.new_val,
                   "corpus_changed": result.corpus_changed,
                   "seconds": round(result.seconds, 1)}
        try:
            with self.sessions.begin() as s:
                finish_training_run(s, result.run_id, status=status.value, metrics=metrics,
                                    error=result.error, model_version=result.new_version)
        except InvalidInput as exc:  # a restarted scheduler already marked it interrupted
            log.warning("run %s: %s", result.run_id, exc)
        log.info("%s", result.message())
        for notify in list(_notifiers):
            try:
                notify(result)
            except Exception:  # noqa: BLE001 - a broken hook must not fail the run
                log.exception("retrain notifier %r failed", notify)


def _val(art) -> float | None:
    value = art.metrics.get("val_loss_nats")
    return None if value is None else float(value)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip(": ")[:500]
