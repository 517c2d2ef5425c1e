"""``new_id``: standard-library UUIDs, version 7, in creation order (cursors and the outbox order rely on it)."""

from __future__ import annotations

import pickle
import time
import uuid

from shared.ids import new_id


def test_ids_are_standard_uuid7_in_creation_order() -> None:
    ids = [new_id() for _ in range(50_000)]  # many per millisecond
    assert all(type(i) is uuid.UUID and i.version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first = ids[0]
    assert first == uuid.UUID(str(first)) and hash(first) == hash(uuid.UUID(str(first)))
    assert pickle.loads(pickle.dumps(first)) == first
    millis = first.int >> 80
    assert abs(millis - time.time() * 1000) < 5_000
