"""A finished ``training_runs`` row, as the scheduler process leaves one (for notice tests).

    run_id = await core.db.run(finished_run, "tiny")
"""
from __future__ import annotations

from storage.versions import finish_training_run, start_training_run

PROMOTED = ("retrain tiny: val loss 1.5000 -> 1.4000 nats/char, tiny-v2 promoted, "
            "now serving")


def started_run(session, style: str = "tiny") -> int:
    return start_training_run(session, style=style, trigger="schedule",
                              budget_minutes=1).id


def finish(session, run_id: int, outcome: str = "promoted") -> int:
    if outcome == "failed":
        finish_training_run(session, run_id, status="failed", error="killed (timeout)")
    else:
        finish_training_run(session, run_id, status="succeeded", model_version="tiny-v2",
                            metrics={"outcome": outcome, "old_version": "tiny-v1",
                                     "old_val_loss": 1.5, "new_val_loss": 1.4})
    return run_id


def finished_run(session, style: str = "tiny", outcome: str = "promoted") -> int:
    """Start and finish one run of ``style``; its id (message: ``PROMOTED`` for tiny)."""
    return finish(session, started_run(session, style), outcome)
