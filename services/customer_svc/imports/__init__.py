"""Integration intake: OEM / DMS records as bulk import files (async jobs) or one by one (REST upserts by
external id)."""
