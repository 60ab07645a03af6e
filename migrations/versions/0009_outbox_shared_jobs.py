"""outbox rows of one transaction share an rq job

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 18:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rq_job', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox_jobs', schema=None) as batch_op:
        batch_op.drop_column('rq_job')
