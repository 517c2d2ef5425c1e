"""Identifiers: UUIDv7 everywhere (time ordered, so ids double as a stable sort key for cursors).

``uuid_utils`` (Rust) makes them monotonic within a millisecond, as RFC 9562 allows; they are returned as the
standard library's ``uuid.UUID`` (what SQLAlchemy, asyncpg and pydantic expect), built without its constructor's
checks, as ``uuid_utils.compat`` does, minus an enum lookup per id: bulk writers make several per record."""

import uuid

try:
    from uuid_utils import _uuid7_int
except ImportError:  # a release without it: the public (slower) constructor
    from uuid_utils.compat import uuid7 as _uuid7

    def _uuid7_int() -> int:
        return _uuid7().int

_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown
_UUID = uuid.UUID


def new_id() -> uuid.UUID:
    u = _new(_UUID)
    _set(u, "int", _uuid7_int())
    _set(u, "is_safe", _UNKNOWN)
    return u
