"""structlog JSON logs with request/correlation ids; phone numbers and names are masked always."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.observability.context import correlation_id_var, request_id_var
from shared.pii import mask_document

def _mask_pii(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return mask_document(event)


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
            structlog.processors.format_exc_info,  # before masking: exception text carries values too
            _mask_pii,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
