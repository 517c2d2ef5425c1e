"""visits and membership

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:03:44.607382

Service visits (repair orders), membership tiers, memberships and the points ledger.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('membership_tier',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('discount_rate', sa.Numeric(precision=4, scale=3), nullable=False, comment='Price factor, 0.950 = 5% off'),
    sa.Column('fee', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('bonus_points', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_membership_tier')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_membership_tier_tenant_id_name')),
    schema='customer'
    )
    op.create_index(op.f('ix_membership_tier_tenant_id'), 'membership_tier', ['tenant_id'], unique=False, schema='customer')
    op.create_table('membership',
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('vehicle_id', sa.Uuid(), nullable=False),
    sa.Column('tier_id', sa.Uuid(), nullable=False),
    sa.Column('card_no', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('joined_at', sa.Date(), nullable=False),
    sa.Column('expires_at', sa.Date(), nullable=False),
    sa.Column('fee_paid', sa.Numeric(precision=12, scale=2), nullable=False, comment='Total membership fees paid (join and upgrades)'),
    sa.Column('points_balance', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('points_balance >= 0', name=op.f('ck_membership_points_balance_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.customer.id'], name=op.f('fk_membership_customer_id_customer')),
    sa.ForeignKeyConstraint(['tier_id'], ['customer.membership_tier.id'], name=op.f('fk_membership_tier_id_membership_tier')),
    sa.ForeignKeyConstraint(['vehicle_id'], ['customer.vehicle.id'], name=op.f('fk_membership_vehicle_id_vehicle')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_membership')),
    sa.UniqueConstraint('tenant_id', 'card_no', name=op.f('uq_membership_tenant_id_card_no')),
    schema='customer'
    )
    op.create_index(op.f('ix_membership_customer_id'), 'membership', ['customer_id'], unique=False, schema='customer')
    op.create_index(op.f('ix_membership_store_id'), 'membership', ['store_id'], unique=False, schema='customer')
    op.create_index(op.f('ix_membership_tenant_id'), 'membership', ['tenant_id'], unique=False, schema='customer')
    op.create_index(op.f('ix_membership_tier_id'), 'membership', ['tier_id'], unique=False, schema='customer')
    op.create_index('uq_membership_vehicle_current', 'membership', ['vehicle_id'], unique=True, schema='customer', postgresql_where=sa.text("status <> 'withdrawn'"), sqlite_where=sa.text("status <> 'withdrawn'"))
    op.create_table('service_visit',
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('vehicle_id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=True, comment='DMS repair-order id, unique per tenant'),
    sa.Column('visit_type', sa.String(length=20), nullable=False),
    sa.Column('ro_number', sa.String(length=40), nullable=True),
    sa.Column('mileage_km', sa.Integer(), nullable=True),
    sa.Column('advisor_id', sa.Uuid(), nullable=True),
    sa.Column('items', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('symptoms', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.customer.id'], name=op.f('fk_service_visit_customer_id_customer')),
    sa.ForeignKeyConstraint(['vehicle_id'], ['customer.vehicle.id'], name=op.f('fk_service_visit_vehicle_id_vehicle')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_visit')),
    sa.UniqueConstraint('tenant_id', 'external_id', name=op.f('uq_service_visit_tenant_id_external_id')),
    schema='customer'
    )
    op.create_index(op.f('ix_service_visit_store_id'), 'service_visit', ['store_id'], unique=False, schema='customer')
    op.create_index('ix_service_visit_tenant_completed', 'service_visit', ['tenant_id', 'completed_at'], unique=False, schema='customer')
    op.create_index('ix_service_visit_tenant_customer', 'service_visit', ['tenant_id', 'customer_id'], unique=False, schema='customer')
    op.create_index(op.f('ix_service_visit_tenant_id'), 'service_visit', ['tenant_id'], unique=False, schema='customer')
    op.create_index('ix_service_visit_tenant_vehicle', 'service_visit', ['tenant_id', 'vehicle_id'], unique=False, schema='customer')
    op.create_table('points_entry',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('membership_id', sa.Uuid(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('balance_after', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False, comment='bonus | adjustment'),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('operator_id', sa.Uuid(), nullable=False, comment='The staff member responsible (业务员, R-PERM-07)'),
    sa.Column('batch_id', sa.Uuid(), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['membership_id'], ['customer.membership.id'], name=op.f('fk_points_entry_membership_id_membership'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_entry')),
    schema='customer'
    )
    op.create_index(op.f('ix_points_entry_batch_id'), 'points_entry', ['batch_id'], unique=False, schema='customer')
    op.create_index('ix_points_entry_membership', 'points_entry', ['membership_id', 'id'], unique=False, schema='customer')


def downgrade() -> None:
    op.drop_index('ix_points_entry_membership', table_name='points_entry', schema='customer')
    op.drop_index(op.f('ix_points_entry_batch_id'), table_name='points_entry', schema='customer')
    op.drop_table('points_entry', schema='customer')
    op.drop_index('ix_service_visit_tenant_vehicle', table_name='service_visit', schema='customer')
    op.drop_index(op.f('ix_service_visit_tenant_id'), table_name='service_visit', schema='customer')
    op.drop_index('ix_service_visit_tenant_customer', table_name='service_visit', schema='customer')
    op.drop_index('ix_service_visit_tenant_completed', table_name='service_visit', schema='customer')
    op.drop_index(op.f('ix_service_visit_store_id'), table_name='service_visit', schema='customer')
    op.drop_table('service_visit', schema='customer')
    op.drop_index('uq_membership_vehicle_current', table_name='membership', schema='customer', postgresql_where=sa.text("status <> 'withdrawn'"), sqlite_where=sa.text("status <> 'withdrawn'"))
    op.drop_index(op.f('ix_membership_tier_id'), table_name='membership', schema='customer')
    op.drop_index(op.f('ix_membership_tenant_id'), table_name='membership', schema='customer')
    op.drop_index(op.f('ix_membership_store_id'), table_name='membership', schema='customer')
    op.drop_index(op.f('ix_membership_customer_id'), table_name='membership', schema='customer')
    op.drop_table('membership', schema='customer')
    op.drop_index(op.f('ix_membership_tier_tenant_id'), table_name='membership_tier', schema='customer')
    op.drop_table('membership_tier', schema='customer')
