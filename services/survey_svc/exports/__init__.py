"""Streamed exports of survey results and complaint cases (CSV, JSON, NDJSON)."""
