"""audit log append-only

The audit log is evidence (R-PERM-09: records "must not be altered arbitrarily"): the database itself refuses
UPDATE, DELETE and TRUNCATE on it, whatever the application does.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION customer.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'customer.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
        END $$
    """)
    op.execute("""
        CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON customer.audit_log
        FOR EACH ROW EXECUTE FUNCTION customer.audit_log_append_only()
    """)
    op.execute("""
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON customer.audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION customer.audit_log_append_only()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_no_truncate ON customer.audit_log")
    op.execute("DROP TRIGGER audit_log_no_update_delete ON customer.audit_log")
    op.execute("DROP FUNCTION customer.audit_log_append_only()")
