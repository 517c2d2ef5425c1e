"""webhook secret overlap and endpoint cooling

``previous_secret`` / ``previous_secret_until``: after a rotation the old secret signs too (a second ``v1``
signature) until the overlap ends, so the partner can deploy the new one without rejecting deliveries.
``failures`` / ``cool_until``: consecutive failed attempts of an endpoint, and until when its deliveries wait, so
one partner that is down does not take every delivery slot from the others. Nullable or defaulted columns: adding
them rewrites nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_endpoint", sa.Column("previous_secret", sa.String(200), nullable=True), schema="notify")
    op.add_column("webhook_endpoint", sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
                  schema="notify")
    op.add_column("webhook_endpoint", sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
                  schema="notify")
    op.add_column("webhook_endpoint", sa.Column("cool_until", sa.DateTime(timezone=True), nullable=True),
                  schema="notify")


def downgrade() -> None:
    for column in ("cool_until", "failures", "previous_secret_until", "previous_secret"):
        op.drop_column("webhook_endpoint", column, schema="notify")
