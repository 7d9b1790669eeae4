"""training runs can be queued

``/retrain STYLE`` records a run with status ``queued``; the scheduler's poll job
(training/scheduler.py) claims it and moves it to ``running``. Only the CHECK constraint
on ``training_runs.status`` changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:05:00

"""
from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('running', 'succeeded', 'failed', 'cancelled')"
NEW = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def _status_check(sql: str) -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_constraint(op.f('ck_training_runs_status'), type_='check')
        batch.create_check_constraint(op.f('ck_training_runs_status'), sql)


def upgrade() -> None:
    _status_check(NEW)


def downgrade() -> None:
    # Queued runs never started: they cannot be kept under the old statuses.
    op.execute("DELETE FROM training_runs WHERE status = 'queued'")
    _status_check(OLD)
