"""Database plumbing: one schema, one engine and one Alembic history per service."""

from shared.db.base import Base_for_schema, TenantScopedMixin, TimestampMixin, UTCDateTime, JSONType, utcnow
from shared.db.engine import create_engine, make_sessionmaker

__all__ = [
    "Base_for_schema",
    "TenantScopedMixin",
    "TimestampMixin",
    "UTCDateTime",
    "JSONType",
    "utcnow",
    "create_engine",
    "make_sessionmaker",
]
