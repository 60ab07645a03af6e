"""fraud scoring and history import: cheaper indexes to keep up, and to read

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 15:00:00

- purchases: ``(serial_number, sku, purchase_date)`` answers the history import's purchase
  lookup from the index alone and serves every lookup the serial index served: it replaces it.
- historic_repairs: the import key leads with the serial, so it also serves every lookup by
  serial and ``ix_historic_repairs_serial_received`` goes; the scoring aggregate's covering
  index leads with the month, so claims (which arrive in date order) are added to its last
  pages instead of all over it; the hard fraud rules get a partial index each of the few
  claims that break them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

CUBE_MEASURES = ['doa', 'late_doa', 'parts_quantity', 'parts_cost', 'premium_parts',
                 'labor_minutes', 'parts_not_returned', 'claimed_amount']
# (index, SQLite predicate, PostgreSQL predicate): as SQLAlchemy renders each rule's condition.
RULE_BREAKS = (
    ('ix_historic_repairs_outside_bom', 'outside_bom_parts > 0', 'outside_bom_parts > 0'),
    ('ix_historic_repairs_outside_warranty', 'outside_warranty IS 1', 'outside_warranty IS true'),
    ('ix_historic_repairs_unregistered', 'serial_registered IS 0', 'serial_registered IS false'),
)


def upgrade():
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.create_index('ix_purchases_serial_sku_date',
                              ['serial_number', 'sku', 'purchase_date'], unique=False)
        batch_op.drop_index('ix_purchases_serial_number')
    with op.batch_alter_table('historic_repairs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_historic_repairs_partner_code_serial_number_received_date',
                                 type_='unique')
        batch_op.create_unique_constraint(
            'uq_historic_repairs_serial_number_received_date_partner_code',
            ['serial_number', 'received_date', 'partner_code'])
        batch_op.drop_index('ix_historic_repairs_serial_received')
        batch_op.drop_index('ix_historic_repairs_cube')
        batch_op.create_index('ix_historic_repairs_cube',
                              ['received_month', 'partner_code', 'sku', *CUBE_MEASURES],
                              unique=False)
    for name, sqlite, postgresql in RULE_BREAKS:
        op.create_index(name, 'historic_repairs', ['id'], unique=False,
                        sqlite_where=sa.text(sqlite), postgresql_where=sa.text(postgresql))


def downgrade():
    for name, _, _ in RULE_BREAKS:
        op.drop_index(name, table_name='historic_repairs')
    with op.batch_alter_table('historic_repairs', schema=None) as batch_op:
        batch_op.drop_index('ix_historic_repairs_cube')
        batch_op.create_index('ix_historic_repairs_cube',
                              ['partner_code', 'sku', 'received_month', *CUBE_MEASURES],
                              unique=False)
        batch_op.create_index('ix_historic_repairs_serial_received',
                              ['serial_number', 'received_date'], unique=False)
        batch_op.drop_constraint('uq_historic_repairs_serial_number_received_date_partner_code',
                                 type_='unique')
        batch_op.create_unique_constraint(
            'uq_historic_repairs_partner_code_serial_number_received_date',
            ['partner_code', 'serial_number', 'received_date'])
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.create_index('ix_purchases_serial_number', ['serial_number'], unique=False)
        batch_op.drop_index('ix_purchases_serial_sku_date')
