"""Streamed export of follow-up completion (CSV, JSON, NDJSON)."""
