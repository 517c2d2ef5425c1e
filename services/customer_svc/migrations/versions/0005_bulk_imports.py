"""bulk imports

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 07:24:13.662397

Import jobs (the uploaded file in chunks, progress, the per-row report) and customers' external ids (the source
system's id, unique per dealer group).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('import_job',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False, comment='customers | deliveries | visits'),
    sa.Column('format', sa.String(length=10), nullable=False, comment='csv | jsonl'),
    sa.Column('encoding', sa.String(length=20), nullable=False, comment='auto | utf-8 | gbk (the one found once read)'),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('rows_done', sa.Integer(), nullable=False),
    sa.Column('bytes_done', sa.BigInteger(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=1000), nullable=True),
    sa.Column('warnings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=False),
    sa.Column('created_by_kind', sa.String(length=20), nullable=False),
    sa.Column('scope_store_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_job')),
    schema='customer'
    )
    op.create_index('ix_import_job_tenant_created', 'import_job', ['tenant_id', 'created_at'], unique=False, schema='customer')
    op.create_index('ix_import_job_waiting', 'import_job', ['created_at'], unique=False, schema='customer', postgresql_where=sa.text("status IN ('queued', 'running')"), sqlite_where=sa.text("status IN ('queued', 'running')"))
    op.create_table('import_chunk',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['customer.import_job.id'], name=op.f('fk_import_chunk_job_id_import_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'seq', name=op.f('pk_import_chunk')),
    schema='customer'
    )
    op.create_table('import_row',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False, comment='accepted | updated | unchanged | rejected'),
    sa.Column('key', sa.String(length=64), nullable=True, comment="The row's external id or VIN"),
    sa.Column('customer_id', sa.Uuid(), nullable=True),
    sa.Column('vehicle_id', sa.Uuid(), nullable=True),
    sa.Column('visit_id', sa.Uuid(), nullable=True),
    sa.Column('field', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['customer.import_job.id'], name=op.f('fk_import_row_job_id_import_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'row', name=op.f('pk_import_row')),
    schema='customer'
    )
    op.add_column('customer', sa.Column('external_id', sa.String(length=64), nullable=True, comment="The source system's customer id (OEM / DMS), unique per dealer group"), schema='customer')
    op.create_unique_constraint(op.f('uq_customer_tenant_id_external_id'), 'customer', ['tenant_id', 'external_id'], schema='customer')


def downgrade() -> None:
    op.drop_constraint(op.f('uq_customer_tenant_id_external_id'), 'customer', schema='customer', type_='unique')
    op.drop_column('customer', 'external_id', schema='customer')
    op.drop_table('import_row', schema='customer')
    op.drop_table('import_chunk', schema='customer')
    op.drop_index('ix_import_job_waiting', table_name='import_job', schema='customer', postgresql_where=sa.text("status IN ('queued', 'running')"), sqlite_where=sa.text("status IN ('queued', 'running')"))
    op.drop_index('ix_import_job_tenant_created', table_name='import_job', schema='customer')
    op.drop_table('import_job', schema='customer')
