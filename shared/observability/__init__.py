"""Logs, request/correlation ids, metrics and health endpoints."""
