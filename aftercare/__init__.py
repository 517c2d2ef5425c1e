"""The embedded all-in-one runner: the one place allowed to import every service."""
