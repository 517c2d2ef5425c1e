"""The events a message's fate publishes (sent, delivered, failed, suppressed), built from its row."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events.catalog import notify as ev
from shared.events.envelope import EventData

_KINDS: dict[str, type[ev.MessageFacts]] = {"sent": ev.MessageSent, "delivered": ev.MessageDelivered,
                                            "failed": ev.MessageFailed, "suppressed": ev.MessageSuppressed}


def event_for(message: Any, kind: str, **extra: Any) -> tuple[EventData, uuid.UUID, uuid.UUID]:
    """``(event, tenant, store)`` for ``Outbox.append_many``; ``message`` is a row or an ORM object."""
    facts = dict(message_id=message.id, idempotency_key=message.idempotency_key, request_id=message.request_id,
                 source=message.source, customer_id=message.customer_id, staff_id=message.staff_id,
                 rule_key=message.rule_key, template=message.template_key, purpose=message.purpose,
                 channel=message.channel, provider=message.provider)
    facts.update({k: v for k, v in extra.items() if v is not None})
    return _KINDS[kind].model_construct(**facts), message.tenant_id, message.store_id
