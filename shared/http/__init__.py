"""HTTP conventions: cursor pages, ETags, idempotent creates, the service app factory."""
