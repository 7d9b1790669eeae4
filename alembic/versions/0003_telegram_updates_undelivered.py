"""telegram_updates journal; requests can be 'undelivered'

``telegram_updates`` keeps each received Telegram update until it is answered (the
adapter's at-least-once delivery across a crash). ``requests.outcome`` gains
``undelivered``: the reply was written but the platform never accepted it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 09:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "outcome IN ('ok', 'error', 'rate_limited', 'bad_input', 'busy')"
NEW = "outcome IN ('ok', 'error', 'rate_limited', 'bad_input', 'busy', 'undelivered')"


def _outcome_check(sql: str) -> None:
    with op.batch_alter_table('requests') as batch:
        batch.drop_constraint(op.f('ck_requests_outcome'), type_='check')
        batch.create_check_constraint(op.f('ck_requests_outcome'), sql)


def upgrade() -> None:
    op.create_table('telegram_updates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bot_id', sa.BigInteger(), nullable=False),
    sa.Column('update_id', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_telegram_updates')),
    sa.UniqueConstraint('bot_id', 'update_id', name=op.f('uq_telegram_updates_bot_id_update_id'))
    )
    with op.batch_alter_table('telegram_updates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telegram_updates_received_at'), ['received_at'], unique=False)
    _outcome_check(NEW)


def downgrade() -> None:
    # The old schema has no word for an undelivered reply: it was logged as ok.
    op.execute("UPDATE requests SET outcome = 'ok' WHERE outcome = 'undelivered'")
    _outcome_check(OLD)
    with op.batch_alter_table('telegram_updates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_telegram_updates_received_at'))
    op.drop_table('telegram_updates')
