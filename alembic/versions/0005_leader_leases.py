"""leader_leases: which scheduler leads, on SQLite

Any number of ``python -m training.scheduler`` processes may run; one leads. On
PostgreSQL an advisory lock decides and no row is needed; on SQLite the leader holds a
row here and renews its ``expires_at`` (storage/leadership.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 12:30:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('leader_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leader_leases')))


def downgrade() -> None:
    op.drop_table('leader_leases')
