"""per-stage SLA limits

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:00:00

"""
from alembic import op
import sqlalchemy as sa

import common.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_limits', sa.JSON(), nullable=True))
    with op.batch_alter_table('repairs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_entered_at', common.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stage_paused_seconds', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('sla_alerts', schema=None) as batch_op:
        batch_op.alter_column('level', existing_type=sa.String(length=12), type_=sa.String(length=40),
                              existing_nullable=False)
    # Repairs already under way: their stage began at their last change.
    op.execute("UPDATE repairs SET stage_entered_at = updated_at, stage_paused_seconds = paused_seconds")


def downgrade():
    with op.batch_alter_table('sla_alerts', schema=None) as batch_op:
        batch_op.alter_column('level', existing_type=sa.String(length=40), type_=sa.String(length=12),
                              existing_nullable=False)
    with op.batch_alter_table('repairs', schema=None) as batch_op:
        batch_op.drop_column('stage_paused_seconds')
        batch_op.drop_column('stage_entered_at')
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_column('stage_limits')
