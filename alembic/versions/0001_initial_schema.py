"""initial schema

Users, chats, requests, generations, ratings, settings and their audit trail, model
versions, training runs (see storage/models.py).

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 08:11:17.243198

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('chats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chats')),
    sa.UniqueConstraint('platform', 'external_id', name=op.f('uq_chats_platform_external_id'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('style', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('artifact_path', sa.String(length=512), nullable=False),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.Column('parent_version', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('candidate', 'active', 'retired')", name=op.f('ck_model_versions_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('version', name=op.f('uq_model_versions_version'))
    )
    op.create_index(op.f('ix_model_versions_style'), 'model_versions', ['style'], unique=False)
    op.create_index('uq_model_versions_active_style', 'model_versions', ['style'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('platform', 'external_id', name=op.f('uq_users_platform_external_id'))
    )
    op.create_table('requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('command', sa.String(length=64), nullable=False),
    sa.Column('style', sa.String(length=64), nullable=True),
    sa.Column('variant', sa.String(length=32), nullable=False),
    sa.Column('prime', sa.Text(), nullable=False),
    sa.Column('prime_chars', sa.Integer(), nullable=False),
    sa.Column('temperature', sa.Float(), nullable=True),
    sa.Column('top_k', sa.Integer(), nullable=True),
    sa.Column('top_p', sa.Float(), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('max_chars', sa.Integer(), nullable=True),
    sa.Column('model_version', sa.String(length=128), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("outcome IN ('ok', 'error', 'rate_limited', 'bad_input', 'busy')", name=op.f('ck_requests_outcome')),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], name=op.f('fk_requests_chat_id_chats')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_requests_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requests')),
    sa.UniqueConstraint('uid', name=op.f('uq_requests_uid'))
    )
    op.create_index(op.f('ix_requests_chat_id'), 'requests', ['chat_id'], unique=False)
    op.create_index(op.f('ix_requests_created_at'), 'requests', ['created_at'], unique=False)
    op.create_index(op.f('ix_requests_model_version'), 'requests', ['model_version'], unique=False)
    op.create_index(op.f('ix_requests_style'), 'requests', ['style'], unique=False)
    op.create_index(op.f('ix_requests_user_id'), 'requests', ['user_id'], unique=False)

    op.create_table('setting_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('style', sa.String(length=64), nullable=True),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('old_value', sa.Float(), nullable=True),
    sa.Column('new_value', sa.Float(), nullable=True),
    sa.Column('changed_by_user_id', sa.Integer(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("scope IN ('global', 'style', 'chat')", name=op.f('ck_setting_changes_scope')),
    sa.ForeignKeyConstraint(['changed_by_user_id'], ['users.id'], name=op.f('fk_setting_changes_changed_by_user_id_users')),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], name=op.f('fk_setting_changes_chat_id_chats')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_setting_changes'))
    )
    op.create_index(op.f('ix_setting_changes_changed_at'), 'setting_changes', ['changed_at'], unique=False)

    op.create_table('settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('style', sa.String(length=64), nullable=True),
    sa.Column('chat_id', sa.Integer(), nullable=True),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('set_by_user_id', sa.Integer(), nullable=True),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(scope = 'global' AND style IS NULL AND chat_id IS NULL) OR (scope = 'style' AND style IS NOT NULL AND chat_id IS NULL) OR (scope = 'chat' AND style IS NULL AND chat_id IS NOT NULL)", name=op.f('ck_settings_scope_shape')),
    sa.CheckConstraint("scope IN ('global', 'style', 'chat')", name=op.f('ck_settings_scope')),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], name=op.f('fk_settings_chat_id_chats')),
    sa.ForeignKeyConstraint(['set_by_user_id'], ['users.id'], name=op.f('fk_settings_set_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settings')),
    sa.UniqueConstraint('key', name=op.f('uq_settings_key'))
    )
    op.create_table('training_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('style', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_by_user_id', sa.Integer(), nullable=True),
    sa.Column('budget_minutes', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('model_version', sa.String(length=128), nullable=True),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_training_runs_status')),
    sa.CheckConstraint("trigger IN ('schedule', 'admin', 'manual')", name=op.f('ck_training_runs_trigger')),
    sa.ForeignKeyConstraint(['requested_by_user_id'], ['users.id'], name=op.f('fk_training_runs_requested_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_runs'))
    )
    op.create_index(op.f('ix_training_runs_started_at'), 'training_runs', ['started_at'], unique=False)
    op.create_index(op.f('ix_training_runs_style'), 'training_runs', ['style'], unique=False)

    op.create_table('generations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('stop_reason', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("stop_reason IN ('stop', 'max_chars')", name=op.f('ck_generations_stop_reason')),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_generations_request_id_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generations')),
    sa.UniqueConstraint('request_id', name=op.f('uq_generations_request_id'))
    )
    op.create_table('ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.SmallInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('value IN (-1, 1)', name=op.f('ck_ratings_value')),
    sa.ForeignKeyConstraint(['generation_id'], ['generations.id'], name=op.f('fk_ratings_generation_id_generations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ratings_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings')),
    sa.UniqueConstraint('generation_id', 'user_id', name=op.f('uq_ratings_generation_id_user_id'))
    )
    op.create_index(op.f('ix_ratings_user_id'), 'ratings', ['user_id'], unique=False)



def downgrade() -> None:
    """Drop everything, dependents first (indexes go with their tables)."""
    for table in ("ratings", "generations", "training_runs", "settings", "setting_changes",
                  "requests", "users", "model_versions", "chats"):
        op.drop_table(table)
