"""structlog JSON logs with request/correlation ids; phone numbers and names are masked always."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from shared.observability.context import correlation_id_var, request_id_var

_PHONE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_NAME_KEYS = {"name", "customer_name", "contact_person", "full_name"}
_PHONE_KEYS = {"phone", "mobile", "phones", "e164"}


def mask_phone(text: str) -> str:
    """138****8000 style: keeps prefix and last four digits, enough to recognise a record."""
    return _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _NAME_KEYS:
            return mask_name(value)
        return mask_phone(value)
    if isinstance(value, dict):
        return {k: _mask_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_value(key, v) for v in value]
    return value


def _mask_pii(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: _mask_value(k, v) for k, v in event.items()}


def _add_ids(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    if (rid := request_id_var.get()) is not None:
        event.setdefault("request_id", rid)
    if (cid := correlation_id_var.get()) is not None:
        event.setdefault("correlation_id", cid)
    return event


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper(), force=True)
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_ids,
            _mask_pii,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
