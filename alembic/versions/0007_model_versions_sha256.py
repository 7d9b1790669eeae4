"""model versions remember the sha256 of their artifact

``model_versions.sha256`` is the digest of the artifact's files recorded when it was
published (genmodels/store.py: ``digest``), so a machine that downloads the version from
the model store can refuse a corrupted or swapped copy. The style's active version is
the row with status 'active' (one per style, a partial unique index since 0001): that
row is the pointer every inference process follows. Rows published before this
migration have no digest and are served unverified, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('sha256')
