"""Invitations: created from followup_svc's survey commands (or by staff), each bound to the visit or delivery
it asks about, with its answer link sent through notify_svc; one reminder if unanswered; expiry.

One invitation per occurrence key (a redelivered command changes nothing) and per survey and subject (a second
request about the same repair order is refused: one repair order is rated once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from survey_svc.invitations.tokens import token_for, token_hash
from survey_svc.models import Complaint, CustomerView, Invitation, StaffView, VisitView
from survey_svc.policy import PolicyRules
from survey_svc.settings import SurveySettings
from survey_svc.surveys.store import current, ensure_default_surveys
from shared.db.base import utcnow
from shared.events.catalog.survey import SurveyInvited, SurveyMessageRequested
from shared.ids import new_id
from shared.messaging.outbox import Outbox

log = structlog.get_logger("invitations")
LIVE = ("open", "answered")


@dataclass
class InviteRequest:
    tenant_id: uuid.UUID
    store_id: uuid.UUID
    idempotency_key: str
    survey_key: str
    customer_id: uuid.UUID
    about_type: str
    about_id: uuid.UUID
    channels: list[str]
    not_before: datetime
    vehicle_id: uuid.UUID | None = None
    staff_id: uuid.UUID | None = None
    source: str = "playbook"
    rule_key: str | None = None
    created_by: uuid.UUID | None = None
    flags: list[str] = field(default_factory=list)


class SurveyUnknown(LookupError):
    pass


class SubjectUnknown(LookupError):
    """Staff named a customer or subject that is not theirs to survey: ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


async def check_subject(session: AsyncSession, req: InviteRequest) -> None:
    """Invitations staff make (by hand, or a phone answer) must be about a real visit or delivery of that
    customer in that store, or a complaint of theirs (DOMAIN §9.5 integrity: a rating is bound to what it rates).
    Commands from followup_svc need no check: it planned them from the same customer_svc events."""
    customer = await session.get(CustomerView, req.customer_id)
    if customer is None or customer.tenant_id != req.tenant_id or customer.status != "active":
        raise SubjectUnknown("body.customer_id", "no such (active) customer in your dealer group")
    if req.about_type in ("visit", "delivery"):
        about = await session.get(VisitView, (req.about_id, req.about_type))
        ok = about is not None and about.tenant_id == req.tenant_id and about.customer_id == req.customer_id \
            and about.store_id == req.store_id
    else:
        complaint = await session.get(Complaint, req.about_id)
        ok = complaint is not None and complaint.tenant_id == req.tenant_id \
            and complaint.customer_id == req.customer_id and complaint.store_id == req.store_id
    if not ok:
        raise SubjectUnknown("body.about_id", f"no such {req.about_type} of this customer in this store")
    if req.about_type in ("visit", "delivery") and req.vehicle_id is not None and about.vehicle_id is not None \
            and req.vehicle_id != about.vehicle_id:
        raise SubjectUnknown("body.vehicle_id", f"not the vehicle of that {req.about_type}")
    if req.staff_id is not None:  # the rating is credited to them in the per-staff reports
        staff = await session.get(StaffView, req.staff_id)
        if staff is None or staff.tenant_id != req.tenant_id or not staff.active \
                or str(req.store_id) not in staff.store_ids:
            raise SubjectUnknown("body.staff_id", "no such active staff member of this store")


async def existing_for_subject(session: AsyncSession, req: InviteRequest) -> Invitation | None:
    return await session.scalar(sa.select(Invitation).where(
        Invitation.tenant_id == req.tenant_id, Invitation.about_type == req.about_type,
        Invitation.about_id == req.about_id, Invitation.survey_key == req.survey_key,
        Invitation.status.in_(LIVE)).limit(1))


async def _bind(session: AsyncSession, req: InviteRequest) -> None:
    """Fill what the request left out from the visit or delivery it is about (vehicle, the rated staff member)."""
    if req.about_type not in ("visit", "delivery"):
        return
    about = await session.get(VisitView, (req.about_id, req.about_type))
    if about is not None:
        req.vehicle_id = req.vehicle_id or about.vehicle_id
        req.staff_id = req.staff_id or about.staff_id


def contact_changed(rules: PolicyRules, customer: CustomerView | None, since: datetime, now: datetime) -> bool:
    """A contact phone entered or changed shortly before the survey, or after it went out (the link or its
    reminder would reach whoever typed it in): flagged for review."""
    changed = customer.phone_changed_at if customer is not None else None
    return changed is not None and (changed > since or now - changed < timedelta(hours=rules.contact_change_hours))


async def invite(session: AsyncSession, outbox: Outbox, settings: SurveySettings, rules: PolicyRules,
                 req: InviteRequest, now: datetime) -> Invitation | None:
    """The invitation for ``req`` and its message command, or None when it exists already (same key or same
    survey about the same subject). Raises :class:`SurveyUnknown` for a survey the group does not have."""
    found = await session.scalar(sa.select(Invitation).where(
        Invitation.tenant_id == req.tenant_id, Invitation.idempotency_key == req.idempotency_key))
    if found is not None:
        return None
    customer = await session.get(CustomerView, req.customer_id)
    if customer is not None and customer.status == "merged" and customer.merged_into is not None:
        req.customer_id = customer.merged_into
        customer = await session.get(CustomerView, req.customer_id)
    await _bind(session, req)
    if await existing_for_subject(session, req) is not None:
        log.info("survey_already_invited", about_type=req.about_type, about_id=str(req.about_id),
                 survey=req.survey_key)
        return None
    template = await current(session, req.tenant_id, req.survey_key)
    if template is None:
        await ensure_default_surveys(session, req.tenant_id)
        template = await current(session, req.tenant_id, req.survey_key)
    if template is None:
        raise SurveyUnknown(req.survey_key)
    start = max(now, req.not_before)
    expires = start + timedelta(days=rules.invitation_days)
    remind = start + timedelta(days=rules.reminder_days)
    inv_id = new_id()
    token = token_for(settings.token_secret, inv_id)
    inv = Invitation(
        id=inv_id, tenant_id=req.tenant_id, store_id=req.store_id, idempotency_key=req.idempotency_key,
        token_hash=token_hash(token), template_id=template.id, survey_key=template.key,
        survey_version=template.version, customer_id=req.customer_id, vehicle_id=req.vehicle_id,
        about_type=req.about_type, about_id=req.about_id, staff_id=req.staff_id, source=req.source,
        channels=list(req.channels), status="open",
        flags=sorted(set(req.flags) | ({"contact_changed"} if contact_changed(rules, customer, now, now) else set())),
        created_at=now, expires_at=expires, remind_at=remind if remind < expires else None,
        created_by=req.created_by)
    session.add(inv)
    if req.source != "phone":
        _message(outbox, session, settings, inv, "survey_invitation", req.rule_key, start)
    outbox.append(session, SurveyInvited(
        invitation_id=inv.id, survey=inv.survey_key, survey_version=inv.survey_version, customer_id=inv.customer_id,
        vehicle_id=inv.vehicle_id, about_type=inv.about_type, about_id=inv.about_id, staff_id=inv.staff_id,
        expires_at=inv.expires_at, channels=inv.channels), tenant_id=inv.tenant_id, store_id=inv.store_id)
    await session.flush()
    return inv


def _message(outbox: Outbox, session: AsyncSession, settings: SurveySettings, inv: Invitation, template: str,
             rule_key: str | None, not_before: datetime) -> None:
    link = settings.answer_link(token_for(settings.token_secret, inv.id))
    step = "invite" if template == "survey_invitation" else "remind"
    outbox.append(session, SurveyMessageRequested(
        request_id=new_id(), idempotency_key=f"survey:{inv.id}:{step}", customer_id=inv.customer_id,
        vehicle_id=inv.vehicle_id, rule_key=rule_key or f"survey_{inv.survey_key}", template=template,
        channels=inv.channels or ["wechat", "sms"], purpose="service", variables={"survey_link": link},
        not_before=not_before, expires_at=inv.expires_at), tenant_id=inv.tenant_id, store_id=inv.store_id)


class Reminders:
    """The worker loop: one reminder per unanswered invitation when it falls due, and expiry of old links.
    Claims rows with SKIP LOCKED, so any number of workers share the work."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], outbox: Outbox, settings: SurveySettings,
                 clock: Callable[[], datetime] = utcnow, batch: int = 200) -> None:
        self.sessionmaker, self.outbox, self.settings = sessionmaker, outbox, settings
        self.clock = clock
        self.batch = batch

    async def run_once(self) -> int:
        now = self.clock()
        async with self.sessionmaker() as session, session.begin():
            due = (await session.scalars(sa.select(Invitation).where(
                Invitation.remind_at.is_not(None), Invitation.remind_at <= now)
                .order_by(Invitation.remind_at).limit(self.batch).with_for_update(skip_locked=True))).all()
            for inv in due:
                inv.remind_at = None
                if inv.status == "open" and inv.expires_at > now:
                    inv.reminded_at = now
                    _message(self.outbox, session, self.settings, inv, "survey_reminder", None, now)
            expired = await session.execute(sa.update(Invitation).where(
                Invitation.id.in_(sa.select(Invitation.id).where(
                    Invitation.status == "open", Invitation.expires_at <= now).limit(self.batch)
                    .with_for_update(skip_locked=True)))
                .values(status="expired", remind_at=None).execution_options(synchronize_session=False))
        return len(due) + (expired.rowcount or 0)
