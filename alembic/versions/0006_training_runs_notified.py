"""training runs remember that their admin notice was sent

``training_runs.notified_at`` is set by the one bot replica whose conditional UPDATE
claims a finished run's notice (training/registry_ops.py: ``claim_notices``), so each
admin hears of each run once however many replicas poll. Runs finished before this
migration count as announced.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 12:55:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.add_column(sa.Column('notified_at', sa.DateTime(timezone=True),
                                   nullable=True))
    op.execute("UPDATE training_runs SET notified_at = finished_at "
               "WHERE status IN ('succeeded', 'failed', 'cancelled')")


def downgrade() -> None:
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('notified_at')
