"""CloudEvents 1.0 structured-mode envelope, the payload base class and the type registry.

Event types read ``<domain>.<aggregate>.<verb>.v<N>`` and double as the AMQP routing key.
Payloads are read tolerantly (unknown fields ignored): adding a field is compatible, changing or
removing one needs a new version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.db.base import utcnow
from shared.ids import new_id
from shared.observability.context import causation_id_var, correlation_id_var, traceparent_var


class EventData(BaseModel):
    """Base of every payload in the catalog. ``type`` is set by :func:`event_type`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: ClassVar[str]
    subject_field: ClassVar[str] = "id"


registry: dict[str, type[EventData]] = {}
E = TypeVar("E", bound=type[EventData])


def event_type(name: str, subject: str) -> Any:
    """Register a payload class under its CloudEvents ``type``; ``subject`` names the aggregate id field."""

    def deco(cls: E) -> E:
        if name in registry:
            raise ValueError(f"event type {name} registered twice")
        cls.type = name
        cls.subject_field = subject
        registry[name] = cls
        return cls

    return deco


class CloudEvent(BaseModel):
    """CloudEvents 1.0 envelope with our extensions (tenantid, storeid, correlationid, causationid)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = Field(default="1.0", pattern=r"^1\.0$")
    id: uuid.UUID
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime
    datacontenttype: str = "application/json"
    tenantid: str | None = None
    storeid: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> EventData:
        """The data parsed as its catalog model (raises KeyError for an unknown type)."""
        return registry[self.type].model_validate(self.data)


def build_event(data: EventData, *, source: str, tenant_id: uuid.UUID | str | None,
                store_id: uuid.UUID | str | None) -> CloudEvent:
    """The envelope for a payload this service emits. Every field comes from trusted values (the payload is
    already validated), so the envelope is constructed without validating it again (batch writers emit
    thousands per second)."""
    event_id = new_id()
    subject = getattr(data, data.subject_field, None)
    return CloudEvent.model_construct(
        specversion="1.0",
        datacontenttype="application/json",
        id=event_id,
        source=source,
        type=data.type,
        subject=str(subject) if subject is not None else None,
        time=utcnow(),
        tenantid=str(tenant_id) if tenant_id else None,
        storeid=str(store_id) if store_id else None,
        correlationid=correlation_id_var.get() or str(event_id),
        causationid=causation_id_var.get(),
        traceparent=traceparent_var.get(),
        data=data.model_dump(mode="json"),
    )


class Envelopes:
    """What :func:`build_event` makes, as dicts for the JSON encoder (``shared.db.engine.json_dumps``), for batch
    writers appending thousands of events in one transaction: one clock reading and one request context for the
    batch, so each event costs an id and a dict. ``data`` holds JSON values, UUIDs, dates and times."""

    def __init__(self, source: str) -> None:
        self.now = utcnow()
        self._common = {"specversion": "1.0", "source": source, "time": self.now.isoformat().replace("+00:00", "Z"),
                        "datacontenttype": "application/json", "causationid": causation_id_var.get(),
                        "traceparent": traceparent_var.get()}
        self._correlation = correlation_id_var.get()
        self._text: dict[Any, str | None] = {None: None}

    def _str(self, value: uuid.UUID | str | None) -> str | None:
        """Tenant and store ids as text, converted once per batch (every event of a batch names the same few)."""
        text = self._text.get(value, "")
        if text == "":
            text = self._text[value] = str(value) if value else None
        return text

    def make(self, type_: str, subject: Any, data: dict[str, Any], tenant_id: uuid.UUID | str | None,
             store_id: uuid.UUID | str | None) -> tuple[uuid.UUID, dict[str, Any]]:
        """The event's id and envelope. Ids stay ``UUID`` objects: the JSON encoder writes them as the strings
        the envelope holds, faster than ``str()`` here."""
        event_id = new_id()
        return event_id, {**self._common, "id": event_id, "type": type_,
                          "subject": subject if subject is None or type(subject) is uuid.UUID else str(subject),
                          "tenantid": self._str(tenant_id), "storeid": self._str(store_id),
                          "correlationid": self._correlation or event_id, "data": data}


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` is zero or more words."""
    p, k = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(k) + 1))
        return j < len(k) and (p[i] == "*" or p[i] == k[j]) and match(i + 1, j + 1)

    return match(0, 0)
