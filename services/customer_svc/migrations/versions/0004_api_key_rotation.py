"""api key rotation

Rotation without downtime: a key keeps its id and prefix but holds two secrets for a while, the new one
(``key_hash``) and the previous one (``previous_key_hash``, valid until ``previous_valid_until``). Each secret's last
exchange is recorded, so an admin can see whether the partner has switched before the overlap ends.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("previous_key_hash", sa.String(length=64), nullable=True), schema="customer")
    op.add_column("api_key", sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
                  schema="customer")
    op.add_column("api_key", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True), schema="customer")
    op.add_column("api_key", sa.Column("current_last_used_at", sa.DateTime(timezone=True), nullable=True),
                  schema="customer")
    op.add_column("api_key", sa.Column("previous_last_used_at", sa.DateTime(timezone=True), nullable=True),
                  schema="customer")
    # Optimistic concurrency for PATCH (If-Match), like every other updatable record; existing keys start at 1.
    op.add_column("api_key", sa.Column("version", sa.Integer(), nullable=False, server_default="1"), schema="customer")
    op.alter_column("api_key", "version", server_default=None, schema="customer")
    # Keys made before rotation existed have only ever had one secret: its last use is the key's.
    op.execute("UPDATE customer.api_key SET current_last_used_at = last_used_at")


def downgrade() -> None:
    for column in ("version", "previous_last_used_at", "current_last_used_at", "rotated_at", "previous_valid_until",
                   "previous_key_hash"):
        op.drop_column("api_key", column, schema="customer")
