"""``python -m customer_svc api|worker|migrate|downgrade|parked|bootstrap``."""

from __future__ import annotations

import argparse
import os

from customer_svc.app import MIGRATIONS, build_runtime, create_service_app
from customer_svc.bootstrap import StaffSeed, create_tenant
from customer_svc.settings import CustomerSettings
from shared.cli import service_main
from shared.runtime import ServiceRuntime


def _bootstrap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant-code", required=True)
    p.add_argument("--tenant-name", required=True)
    p.add_argument("--store", action="append", required=True, metavar="CODE=NAME")
    p.add_argument("--admin-no", default="admin")
    p.add_argument("--admin-password", default=os.environ.get("AFTERCARE_BOOTSTRAP_PASSWORD"),
                   help="default: $AFTERCARE_BOOTSTRAP_PASSWORD (keeps it out of the process list)")


async def _bootstrap(runtime: ServiceRuntime, args: argparse.Namespace) -> dict:
    """Create a dealer group, its stores and a group-wide admin (idempotent by tenant code)."""
    if not args.admin_password or len(args.admin_password) < 10:
        raise SystemExit("give the admin password (10+ characters) in $AFTERCARE_BOOTSTRAP_PASSWORD or --admin-password")
    stores = [tuple(s.split("=", 1)) for s in args.store]
    admin = StaffSeed(args.admin_no, "Administrator", "admin", ["admin"], [c for c, _ in stores])
    tenant = await create_tenant(runtime.sessionmaker, runtime.outbox, code=args.tenant_code, name=args.tenant_name,
                                 stores=stores, staff=[admin], password=args.admin_password)  # type: ignore[arg-type]
    return {"tenant_id": str(tenant)}


if __name__ == "__main__":
    service_main(CustomerSettings, build_runtime, create_service_app, MIGRATIONS,
                 extra={"bootstrap": (_bootstrap_args, _bootstrap)})
