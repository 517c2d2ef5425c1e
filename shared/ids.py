"""Identifiers: UUIDv7 everywhere (time ordered, so ids double as a stable sort key for cursors)."""

import uuid

from uuid6 import uuid7


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid7().int)
