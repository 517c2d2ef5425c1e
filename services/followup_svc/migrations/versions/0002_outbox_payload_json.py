"""outbox payload as json

The outbox keeps each envelope as written (``json``): nothing queries into it and the relay reads it back as text,
so jsonb's parse on every insert (a sixth of Postgres's work in a bulk import) bought nothing. Its pending index
adds the id, the order of events that share a time (a batch writer stamps its events once).

Rewriting the outbox (and, for customer_svc, rebuilding the customer indexes) locks those tables while it runs:
on a deployment with a large backlog, migrate in a quiet window.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("outbox_message", "payload", existing_type=postgresql.JSONB(astext_type=sa.Text()),
                    type_=sa.JSON(), existing_nullable=False, postgresql_using="payload::json", schema="followup")
    op.drop_index("ix_outbox_message_pending", table_name="outbox_message", schema="followup")
    op.create_index("ix_outbox_message_pending", "outbox_message", ["occurred_at", "id"], schema="followup",
                    postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_outbox_message_pending", table_name="outbox_message", schema="followup")
    op.create_index("ix_outbox_message_pending", "outbox_message", ["occurred_at"], schema="followup",
                    postgresql_where=sa.text("published_at IS NULL"))
    op.alter_column("outbox_message", "payload", existing_type=sa.JSON(),
                    type_=postgresql.JSONB(astext_type=sa.Text()), existing_nullable=False,
                    postgresql_using="payload::jsonb", schema="followup")
