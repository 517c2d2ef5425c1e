"""webhook endpoint owner

A partner subscribes its own webhook endpoints with its integration key: ``webhook_endpoint.api_key_id`` records
which key owns one (null: set up by an admin), so a key sees, changes and replays only its own.

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

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("webhook_endpoint", sa.Column("api_key_id", sa.Uuid(), nullable=True), schema="notify")
    op.create_index(op.f("ix_webhook_endpoint_api_key_id"), "webhook_endpoint", ["api_key_id"], unique=False,
                    schema="notify")
    op.alter_column("webhook_endpoint", "store_ids", existing_type=_JSON, existing_nullable=False,
                    comment="Events of these stores only; empty: all stores (a key's endpoint always lists its "
                            "stores)",
                    existing_comment="Events of these stores only; empty: all stores", schema="notify")


def downgrade() -> None:
    op.alter_column("webhook_endpoint", "store_ids", existing_type=_JSON, existing_nullable=False,
                    comment="Events of these stores only; empty: all stores",
                    existing_comment="Events of these stores only; empty: all stores (a key's endpoint always "
                                     "lists its stores)", schema="notify")
    op.drop_index(op.f("ix_webhook_endpoint_api_key_id"), table_name="webhook_endpoint", schema="notify")
    op.drop_column("webhook_endpoint", "api_key_id", schema="notify")
