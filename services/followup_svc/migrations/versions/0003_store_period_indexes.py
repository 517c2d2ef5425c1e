"""indexes for a store's follow-ups and tasks due in a period

The reports and the completion export ask for a store's occurrences and tasks due between two days; without these
indexes that was a scan of the dealer group's whole history. Built ``CONCURRENTLY`` (outside the migration's
transaction), so the scheduler and the task APIs keep writing while they build; a build interrupted before
leaves an invalid index of the name, dropped first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (("ix_followup_store_due", "followup"), ("ix_task_store_due", "task"))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table in INDEXES:
            op.drop_index(name, table_name=table, schema="followup", postgresql_concurrently=True,
                          if_exists=True)
            op.create_index(name, table, ["tenant_id", "store_id", "due_at"], schema="followup",
                            postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table in INDEXES:
            op.drop_index(name, table_name=table, schema="followup", postgresql_concurrently=True,
                          if_exists=True)
