"""training runs carry a heartbeat

The scheduler running a run refreshes ``training_runs.heartbeat_at`` every few seconds;
a running run whose heartbeat is older than the lease lost its scheduler (killed, machine
gone) and is failed by whoever looks (training/registry_ops.py: ``fail_stale``), so a
dead scheduler no longer blocks /retrain until it restarts. Runs already running get
their start time as the last heartbeat.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 12:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True),
                                   nullable=True))
    op.execute("UPDATE training_runs SET heartbeat_at = started_at "
               "WHERE status = 'running'")


def downgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('heartbeat_at')
