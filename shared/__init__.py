"""Aftercare platform library: every service builds on these pieces; nothing here imports a service."""
