"""The per-service database roles: apply ``deploy/postgres/roles.sql`` with psql and build each service's URL.

    python -m aftercare.dbroles apply --dsn postgresql://postgres@127.0.0.1:5432/aftercare
    python -m aftercare.dbroles url --service customer_svc --database-url postgresql+asyncpg://127.0.0.1/aftercare

Passwords travel in the environment (``<SERVICE>_DB_PASSWORD``, e.g. ``CUSTOMER_SVC_DB_PASSWORD``), never on a
command line. ``roles.sql`` is the source of truth; :data:`SERVICE_SCHEMAS` mirrors its list (a test keeps
them equal).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"

# service (= database role) -> schema it owns
SERVICE_SCHEMAS: dict[str, str] = {
    "customer_svc": "customer",
    "followup_svc": "followup",
    "notify_svc": "notify",
    "survey_svc": "survey",
}


def password_env(service: str) -> str:
    """The environment variable roles.sql reads a service role's password from."""
    return f"{service.upper()}_DB_PASSWORD"


def new_password() -> str:
    return secrets.token_urlsafe(24)


def libpq_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy) -> ``postgresql://...`` (psql, asyncpg)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def service_url(database_url: str, service: str, password: str | None) -> str:
    """``database_url`` (any user) with the service's role and password, keeping host, port, database, driver."""
    return make_url(database_url).set(username=service, password=password or None).render_as_string(hide_password=False)


def apply_roles(admin_dsn: str, passwords: Mapping[str, str] | None = None, quiet: bool = True) -> str:
    """Run roles.sql as a superuser on ``admin_dsn``'s database; ``passwords`` maps service -> password.

    Services left out keep their current password (or the one in the caller's environment). Returns psql's output.
    """
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql is not installed (apt-get install postgresql-client)")
    env = dict(os.environ)
    for service, password in (passwords or {}).items():
        if service not in SERVICE_SCHEMAS:
            raise ValueError(f"unknown service {service!r} (roles.sql knows {sorted(SERVICE_SCHEMAS)})")
        env[password_env(service)] = password
    result = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(ROLES_SQL), libpq_dsn(admin_dsn)],
                            env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"roles.sql failed ({result.returncode}): {result.stderr.strip()}")
    if not quiet:
        print(result.stdout, end="")
    return result.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aftercare.dbroles")
    sub = parser.add_subparsers(dest="cmd", required=True)
    apply = sub.add_parser("apply", help="create/update the service roles and schemas in one database")
    apply.add_argument("--dsn", required=True, help="superuser URL of the platform database")
    url = sub.add_parser("url", help="print a service's database URL (password from <SERVICE>_DB_PASSWORD)")
    url.add_argument("--service", required=True, choices=sorted(SERVICE_SCHEMAS))
    url.add_argument("--database-url", required=True, help="URL of the platform database (any user)")
    args = parser.parse_args(argv)
    if args.cmd == "apply":
        try:
            apply_roles(args.dsn, quiet=False)
        except RuntimeError as exc:
            sys.exit(str(exc))
    else:
        print(service_url(args.database_url, args.service, os.environ.get(password_env(args.service))))


if __name__ == "__main__":
    main()
