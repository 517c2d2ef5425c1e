"""The services the platform is made of, as the embedded runner and the tooling see them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

SERVICE_MODULES = ["customer_svc", "followup_svc", "notify_svc", "survey_svc"]


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    app: ModuleType


def services() -> list[ServiceEntry]:
    return [ServiceEntry(name, importlib.import_module(f"{name}.app")) for name in SERVICE_MODULES]
