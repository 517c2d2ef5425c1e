"""api key view

notify_svc keeps each integration key's latest known state (``customer.api_key.changed.v1``: scopes, stores,
revoked) in ``api_key``: a token stays valid for up to 15 minutes after its key was revoked or narrowed, so the
webhook API and fan-out check the key's state rather than the token's claims alone. Empty at first: a key with no
row has not changed since it was created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scopes", _JSON, nullable=False),
        sa.Column("store_ids", _JSON, nullable=False, comment="The key's stores (a key always lists its stores)"),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_api_key")),
        schema="notify",
    )


def downgrade() -> None:
    op.drop_table("api_key", schema="notify")
