"""Regenerate a service's initial migration from its models (development aid, before a service's first release):
``python scripts/genmig.py survey_svc``. Creates a scratch database, autogenerates revision 0001 into the
service's ``migrations/versions``, drops the database."""

from __future__ import annotations

import asyncio
import importlib
import sys

from alembic import command

from shared.db.migrations import alembic_config
from shared.testing import infra


def main(service: str) -> None:
    app = importlib.import_module(f"{service}.app")
    versions = app.MIGRATIONS / "versions"
    for old in versions.glob("0001_*.py"):
        old.unlink()
    name, url = asyncio.run(infra.create_database())
    try:
        settings = app.settings_class(database_url=url, environment="test")
        command.revision(alembic_config(settings, app.MIGRATIONS), message="initial schema", autogenerate=True,
                         rev_id="0001")
    finally:
        asyncio.run(infra.drop_database(name))


if __name__ == "__main__":
    main(sys.argv[1])
