"""Events notify_svc consumes: customer_svc's basic data feeds the read model (addresses, consent, time zones);
message commands from followup_svc and survey_svc become messages; escalations become notices to staff (by WeCom
where the group's WeCom app is configured, else by SMS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.consent import set_consent
from notify_svc.messages.intake import Request, accept
from notify_svc.models import CustomerView, StaffView, StoreView
from notify_svc.templates.seeding import ensure_default_templates
from notify_svc.webhooks.fanout import PARTNER_EVENT_TYPES, fan_out
from notify_svc.webhooks.keys import follow_key
from shared.events.catalog import customer as ev
from shared.events.catalog import followup as fev
from shared.events.catalog import survey as sev
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import MissingDependency, Subscription

if TYPE_CHECKING:
    from notify_svc.app import NotifyRuntime


def _tenant(event: CloudEvent) -> uuid.UUID:
    return uuid.UUID(event.tenantid)  # type: ignore[arg-type]


def _store(event: CloudEvent) -> uuid.UUID:
    return uuid.UUID(event.storeid)  # type: ignore[arg-type]


async def _upsert(session: AsyncSession, model: Any, key: uuid.UUID, tenant: uuid.UUID, **values: Any) -> Any:
    row = await session.get(model, key, with_for_update=True)
    if row is None:
        row = model(id=key, tenant_id=tenant)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    return row


async def store(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.StoreUpserted.model_validate(event.data)
    await _upsert(session, StoreView, data.store_id, _tenant(event), code=data.code, name=data.name,
                  timezone=data.timezone, active=data.active)
    await ensure_default_templates(session, _tenant(event))


async def staff(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.StaffUpserted.model_validate(event.data)
    await _upsert(session, StaffView, data.staff_id, _tenant(event), name=data.name, phone=data.phone,
                  employee_no=data.employee_no, roles=list(data.roles), store_ids=[str(s) for s in data.store_ids],
                  active=data.active)


async def customer(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.CustomerSnapshot.model_validate(event.data)
    row = await session.get(CustomerView, data.customer_id, with_for_update=True)
    if row is None:
        row = CustomerView(id=data.customer_id, tenant_id=_tenant(event), consents={}, consent_at={})
        session.add(row)
    if row.snapshot_at is None or event.time >= row.snapshot_at:
        row.store_id, row.name, row.phone, row.wechat_openid = (data.store_id, data.name, data.primary_phone,
                                                                data.wechat_openid)
        row.birthday, row.do_not_call, row.snapshot_at = data.birthday, data.do_not_call, event.time
    # A snapshot's consents only fill keys not seen yet: every later change comes as its own consent event (with
    # the time it was recorded) or as an opt-out reply here, and those are ordered by that time.
    for c in data.consents:
        key = f"{c.channel}:{c.purpose}"
        if key not in (row.consent_at or {}):
            set_consent(row, key, c.granted, event.time)


async def consent_changed(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.CustomerConsentChanged.model_validate(event.data)
    row = await session.get(CustomerView, data.customer_id, with_for_update=True)
    if row is None:
        # Retried once the snapshot is in: its consents fill only keys not seen yet, so a withdrawal handled
        # before it would be lost (and the snapshot's older "granted" taken).
        raise MissingDependency(f"customer {data.customer_id} not in the read model yet")
    set_consent(row, f"{data.channel}:{data.purpose}", data.granted, data.recorded_at)


async def merged(session: AsyncSession, event: CloudEvent) -> None:
    data = ev.CustomerMerged.model_validate(event.data)
    row = await session.get(CustomerView, data.merged_id, with_for_update=True)
    if row is not None:
        row.status, row.merged_into = "merged", data.customer_id


def _request(event: CloudEvent) -> Request:
    data = fev.MessageRequested.model_validate(event.data)
    source = "survey" if event.type == sev.SurveyMessageRequested.type else "followup"
    return Request(
        tenant_id=_tenant(event), store_id=_store(event), idempotency_key=data.idempotency_key, source=source,
        template_key=data.template, purpose=data.purpose, channels=list(data.channels), customer_id=data.customer_id,
        vehicle_id=data.vehicle_id, request_id=data.request_id, rule_key=data.rule_key, variables=data.variables,
        not_before=data.not_before, expires_at=data.expires_at, avoid_holidays=data.avoid_holidays)


async def message_requested(session: AsyncSession, event: CloudEvent) -> None:
    await accept(session, [_request(event)])


async def messages_requested(session: AsyncSession, events: list[CloudEvent]) -> None:
    """A burst of commands (a scheduler batch, a bulk send) accepted in one statement."""
    await accept(session, [_request(e) for e in events])


async def notify_escalation(session: AsyncSession, event: CloudEvent, *, key: str, title: str, level: int,
                            reason: str, customer_id: uuid.UUID | None, staff_ids: Sequence[uuid.UUID],
                            channels: Sequence[str]) -> None:
    """Each person told of an escalation gets a work notice on ``channels``, in order (WeCom, else SMS to their
    phone; console when embedded). ``key`` names what escalated; with the level and the person it makes the
    notice's idempotency key, so a redelivered event tells nobody twice."""
    customer = await session.get(CustomerView, customer_id) if customer_id else None
    variables = {"level": level, "reason": reason, "task_title": title,
                 "customer_name": customer.name if customer else "—"}
    await accept(session, [Request(
        tenant_id=_tenant(event), store_id=_store(event), source="escalation", template_key="escalation_notice",
        idempotency_key=f"escalation:{key}:{level}:{staff_id}", purpose="service",
        channels=list(channels), staff_id=staff_id, request_id=event.id, variables=variables)
        for staff_id in staff_ids])


async def task_escalated(session: AsyncSession, event: CloudEvent, channels: Sequence[str] = ("sms",)) -> None:
    """A follow-up task went past its SLA (followup_svc's escalation chain)."""
    data = fev.TaskEscalated.model_validate(event.data)
    await notify_escalation(session, event, key=str(data.task_id), title=data.title or "回访任务", level=data.level,
                            reason=data.reason, customer_id=data.customer_id, staff_ids=data.notify_staff_ids,
                            channels=channels)


async def complaint_escalated(session: AsyncSession, event: CloudEvent, channels: Sequence[str] = ("sms",)) -> None:
    """A complaint breached its SLA and went up the chain of DOMAIN §10.8 (survey_svc): the same work notice,
    naming the complaint."""
    data = sev.ComplaintEscalated.model_validate(event.data)
    await notify_escalation(session, event, key=f"complaint:{data.complaint_id}", title=data.title or data.number,
                            level=data.level, reason=data.reason, customer_id=data.customer_id,
                            staff_ids=data.notify_staff_ids, channels=channels)


def escalation_channels(runtime: NotifyRuntime) -> list[str]:
    """WeCom first where this worker has the group's WeCom app, then SMS. A notice never names a channel nobody
    configured: a staff member without a phone is then "no_phone", not "wecom unavailable"."""
    return ["wecom", "sms"] if "wecom" in runtime.providers else ["sms"]


def subscriptions(runtime: NotifyRuntime) -> list[Subscription]:
    async def escalated(session: AsyncSession, event: CloudEvent) -> None:
        await task_escalated(session, event, escalation_channels(runtime))  # the providers as they are now

    async def complaint(session: AsyncSession, event: CloudEvent) -> None:
        await complaint_escalated(session, event, escalation_channels(runtime))

    return [
        Subscription("stores", (ev.StoreUpserted.type,), store),
        Subscription("staff", (ev.StaffUpserted.type,), staff),
        Subscription("customers", (ev.CustomerCreated.type, ev.CustomerUpdated.type), customer),
        Subscription("consent", (ev.CustomerConsentChanged.type,), consent_changed),
        Subscription("merged", (ev.CustomerMerged.type,), merged),
        Subscription("message_requests", (fev.MessageRequested.type, sev.SurveyMessageRequested.type),
                     message_requested, messages_requested),
        Subscription("escalations", (fev.TaskEscalated.type,), escalated),
        Subscription("complaint_escalations", (sev.ComplaintEscalated.type,), complaint),
        Subscription("webhooks", PARTNER_EVENT_TYPES, fan_out),
        Subscription("api_keys", (ev.ApiKeyChanged.type,), follow_key),
    ]
