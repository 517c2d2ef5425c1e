"""outbox payload as json; write-light customer indexes; import job lease owner

The outbox keeps each envelope as written (``json``): nothing queries into it and the relay reads it back as text,
so jsonb's parse on every insert (a sixth of Postgres's work in a bulk import) bought nothing. Its pending index
adds the id, the order of events that share a time (a batch writer stamps its events once).

Rewriting the outbox (and, for customer_svc, rebuilding the customer indexes) locks those tables while it runs:
on a deployment with a large backlog, migrate in a quiet window.

Customers and vehicles are indexed for the lookups that exist: the name index goes (names are searched by
substring, which a b-tree cannot serve), so do the tenant-only indexes (the unique (tenant, customer_no / external
id / vin) indexes lead with the tenant), and columns most rows leave empty are indexed where set only.

An import job records which worker's claim holds it (``lease_owner``): a worker that stalled past its lease
commits nothing more once another took the job over.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Indexed where set only (most customers leave them empty).
PARTIAL = [("ix_customer_tenant_id_number", ["tenant_id", "id_number"]),
           ("ix_customer_merged_into_id", ["merged_into_id"]),
           ("ix_customer_assigned_sales_id", ["assigned_sales_id"]),
           ("ix_customer_assigned_advisor_id", ["assigned_advisor_id"])]


def upgrade() -> None:
    op.add_column("import_job", sa.Column("lease_owner", sa.Uuid(), nullable=True,
                                          comment="The claim of the worker holding the job; its batches commit "
                                                  "only while it still holds it"), schema="customer")
    op.alter_column("outbox_message", "payload", existing_type=postgresql.JSONB(astext_type=sa.Text()),
                    type_=sa.JSON(), existing_nullable=False, postgresql_using="payload::json", schema="customer")
    op.drop_index("ix_outbox_message_pending", table_name="outbox_message", schema="customer")
    op.create_index("ix_outbox_message_pending", "outbox_message", ["occurred_at", "id"], schema="customer",
                    postgresql_where=sa.text("published_at IS NULL"))
    op.drop_index("ix_customer_name", table_name="customer", schema="customer")
    op.drop_index("ix_customer_tenant_id", table_name="customer", schema="customer")
    op.drop_index("ix_vehicle_tenant_id", table_name="vehicle", schema="customer")
    for name, columns in PARTIAL:
        op.drop_index(name, table_name="customer", schema="customer")
        op.create_index(name, "customer", columns, schema="customer",
                        postgresql_where=sa.text(f"{columns[-1]} IS NOT NULL"))


def downgrade() -> None:
    op.drop_column("import_job", "lease_owner", schema="customer")
    for name, columns in PARTIAL:
        op.drop_index(name, table_name="customer", schema="customer")
        op.create_index(name, "customer", columns, schema="customer")
    op.create_index("ix_vehicle_tenant_id", "vehicle", ["tenant_id"], schema="customer")
    op.create_index("ix_customer_tenant_id", "customer", ["tenant_id"], schema="customer")
    op.create_index("ix_customer_name", "customer", ["name"], schema="customer")
    op.drop_index("ix_outbox_message_pending", table_name="outbox_message", schema="customer")
    op.create_index("ix_outbox_message_pending", "outbox_message", ["occurred_at"], schema="customer",
                    postgresql_where=sa.text("published_at IS NULL"))
    op.alter_column("outbox_message", "payload", existing_type=sa.JSON(),
                    type_=postgresql.JSONB(astext_type=sa.Text()), existing_nullable=False,
                    postgresql_using="payload::jsonb", schema="customer")
