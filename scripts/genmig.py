"""Generate a service's migration from its models (development aid).

``python scripts/genmig.py survey_svc`` regenerates revision 0001 (before a service's first release);
``python scripts/genmig.py customer_svc 0005 "bulk imports"`` autogenerates the next revision on top of the
existing ones. Either way a scratch database is created, used and dropped.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from alembic import command

from shared.db.migrations import alembic_config
from shared.testing import infra


def main(service: str, rev_id: str = "0001", message: str = "initial schema") -> None:
    app = importlib.import_module(f"{service}.app")
    versions = app.MIGRATIONS / "versions"
    if rev_id == "0001":
        for old in versions.glob("0001_*.py"):
            old.unlink()
    name, url = asyncio.run(infra.create_database())
    try:
        settings = app.settings_class(database_url=url, environment="test")
        config = alembic_config(settings, app.MIGRATIONS)
        if rev_id != "0001":
            command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
    finally:
        asyncio.run(infra.drop_database(name))


if __name__ == "__main__":
    main(*sys.argv[1:])
