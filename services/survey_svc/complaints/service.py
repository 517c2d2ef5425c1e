"""Complaint writes: intake, contacts, notes, transfer, status and severity, remedies, goodwill and its approval,
resolution, closure and escalation by hand. Reads are at the end.

首问负责制: whoever takes a complaint in owns it until an explicit, logged transfer. The owner or a manager works
the case (and records the investigation); any staff member of the store may add notes and escalate it (reporting
up is never refused). Goodwill above the group's limit waits for a manager other than the requester
(R-PERM-03/04), also when it comes as an offered package, and only a manager closes a case (R-PERM-06). Every
write locks the case row, is logged on the case and audited, and publishes its event in the same transaction;
state changes bump the version (the ETag).

`If-Match`, as in followup_svc's tasks and customer_svc: required (428 without it) on actions that change what
the case says or decide on what the caller read (respond, transfer, severity, remedies, goodwill and its
decision, resolve, close); checked when sent on transitions that are harmless to repeat (status, escalate).
Notes only add to the log and take none.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from survey_svc.complaints import schemas as s
from survey_svc.complaints.escalation import TOP_LEVEL, escalate, staff_of
from survey_svc.complaints.events import publish
from survey_svc.complaints.numbering import next_number
from survey_svc.privacy import mask_complaint, mask_entry
from survey_svc.complaints.sla import (CHANNEL_NATURE, Facts, closing_due, computed_severity, due_times, higher,
                                       is_major, next_due, overdue, pending_due)
from survey_svc.deps import Ctx
from survey_svc.models import Complaint, ComplaintEntry, CustomerView, Response, StaffView, StoreView, VisitView
from survey_svc.policy import PolicyRules, rules_for
from shared.audit import snapshot
from shared.auth import ensure_store, scoped
from shared.auth.principal import Principal
from shared.auth.roles import MANAGERS, TENANT_WIDE, Role
from shared.auth.scoping import get_scoped
from shared.db.base import where_given
from shared.errors import Conflict, Forbidden, InvalidField
from shared.events.catalog.survey import ComplaintClosed, ComplaintOpened, ComplaintResolved
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams, paginate
from shared.ids import new_id
from shared.pii import mask_name, mask_number

#: Who may approve goodwill above the limit (R-PERM-03): the service manager and the quality line.
APPROVERS = frozenset({Role.SERVICE_MANAGER, Role.CS_MANAGER, Role.CS_DIRECTOR, Role.ADMIN})
#: Earlier complaints of the same customer (or phone) within this window make a case more severe.
REPEAT_WINDOW = timedelta(days=365)


def _key(principal: Principal, key: str | None) -> str | None:
    """The caller's Idempotency-Key as stored on the case (a key belongs to its caller)."""
    return hashlib.sha256(f"{principal.subject}\n{key}".encode()).hexdigest() if key else None


def may_handle(principal: Principal, c: Complaint) -> bool:
    return c.owner_id == principal.subject or principal.has_any(*MANAGERS)


def _log(ctx: Ctx, c: Complaint, kind: str, body: str | None, now: datetime, **data: Any) -> None:
    ctx.session.add(ComplaintEntry(id=new_id(), complaint_id=c.id, tenant_id=c.tenant_id, kind=kind,
                                   author_id=ctx.principal.subject, body=body, data=data, created_at=now))


def _audit(ctx: Ctx, action: str, c: Complaint, before: dict[str, Any] | None) -> None:
    ctx.audit.record(ctx.session, ctx.principal, f"complaint.{action}", "complaint", c.id, tenant_id=c.tenant_id,
                     store_id=c.store_id, before=before, after=snapshot(c))


def _touch(c: Complaint, now: datetime) -> None:
    c.version += 1
    c.updated_at = now


async def _load(ctx: Ctx, complaint_id: uuid.UUID, if_match: str | None, *, handler: bool = True,
                match: bool = True) -> Complaint:
    """The case, locked; 404 outside the caller's stores, 409 once closed, 403 when ``handler`` and the caller is
    neither its owner nor a manager, 428 without If-Match when ``match``, 412 on a stale one."""
    c = await get_scoped(ctx.session, Complaint, ctx.principal, complaint_id, "Complaint", for_update=True)
    if c.status == "closed":
        raise Conflict("The complaint is closed.")
    if handler and not may_handle(ctx.principal, c):
        raise Forbidden("Only the case owner or a manager may do this.")
    if match or if_match is not None:
        check_if_match(if_match, c.version)
    return c


# --- intake ---------------------------------------------------------------------------------------------


@dataclass
class _Subject:
    store_id: uuid.UUID
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    about_type: str | None
    about_id: uuid.UUID | None
    response: Response | None


async def _from_response(ctx: Ctx, data: s.ComplaintCreate) -> _Subject:
    resp = await ctx.session.scalar(scoped(sa.select(Response), Response, ctx.principal)
                                    .where(Response.id == data.response_id))
    if resp is None:
        raise InvalidField("body.response_id", "no such survey response in your stores")
    existing = await ctx.session.scalar(sa.select(Complaint.id).where(
        Complaint.tenant_id == resp.tenant_id, Complaint.response_id == resp.id))
    if existing is not None:
        raise Conflict("This survey response already has a complaint.", existing_id=existing)
    if data.channel not in (None, "survey"):
        raise InvalidField("body.channel", "a complaint from a survey response has channel survey")
    for name, value in (("store_id", resp.store_id), ("customer_id", resp.customer_id),
                        ("vehicle_id", resp.vehicle_id), ("about_type", resp.about_type),
                        ("about_id", resp.about_id)):
        given = getattr(data, name)
        if given is not None and given != value:
            raise InvalidField(f"body.{name}", "comes from the survey response; leave it out")
    return _Subject(resp.store_id, resp.customer_id, resp.vehicle_id, resp.about_type, resp.about_id, resp)


async def _subject(ctx: Ctx, data: s.ComplaintCreate) -> _Subject:
    if data.response_id is not None:
        return await _from_response(ctx, data)
    customer = None
    if data.customer_id is not None:
        customer = await ctx.session.scalar(scoped(sa.select(CustomerView), CustomerView, ctx.principal)
                                            .where(CustomerView.id == data.customer_id))
        if customer is None:
            raise InvalidField("body.customer_id", "no such customer in your stores")
        if customer.merged_into is not None:
            raise InvalidField("body.customer_id", f"merged into customer {customer.merged_into}: use that one")
    elif not (data.complainant_name or data.complainant_phone):
        raise InvalidField("body.complainant_name", "give customer_id, or the complainant's name or phone")
    if (data.about_type is None) != (data.about_id is None):
        raise InvalidField("body.about_id", "give about_type and about_id together")
    store_id = data.store_id or (customer.store_id if customer else None)
    if store_id is None:
        if len(ctx.principal.store_ids) != 1:
            raise InvalidField("body.store_id", "required: you work for several stores")
        [store_id] = ctx.principal.store_ids
    store = await ctx.session.get(StoreView, store_id)
    if store is None or store.tenant_id != ctx.principal.tenant_id or not ctx.principal.can_access_store(store_id):
        raise InvalidField("body.store_id", "no such store of yours")
    vehicle_id = data.vehicle_id
    if data.about_type is not None:
        # What the complaint is about must be a repair order or delivery of this store (and customer): it is
        # exported to the OEM and the vehicle goes on to followup_svc.
        about = await ctx.session.get(VisitView, (data.about_id, data.about_type))
        if about is None or about.tenant_id != ctx.principal.tenant_id or about.store_id != store_id or (
                data.customer_id is not None and about.customer_id != data.customer_id):
            raise InvalidField("body.about_id", f"no such {data.about_type} of this customer in this store")
        if vehicle_id is not None and about.vehicle_id is not None and vehicle_id != about.vehicle_id:
            raise InvalidField("body.vehicle_id", f"not the vehicle of that {data.about_type}")
        vehicle_id = vehicle_id or about.vehicle_id
    return _Subject(store_id, data.customer_id, vehicle_id, data.about_type, data.about_id, None)


async def _repeats(ctx: Ctx, customer_id: uuid.UUID | None, phone: str | None, now: datetime) -> int:
    who = [c for c in (Complaint.customer_id == customer_id if customer_id else None,
                       Complaint.complainant_phone == phone if phone else None) if c is not None]
    if not who:
        return 0
    return await ctx.session.scalar(sa.select(sa.func.count()).select_from(Complaint).where(
        Complaint.tenant_id == ctx.principal.tenant_id, Complaint.opened_at >= now - REPEAT_WINDOW,
        sa.or_(*who))) or 0


def _description(data: s.ComplaintCreate, resp: Response | None) -> str:
    if data.description:
        return data.description
    if resp is None:
        raise InvalidField("body.description", "required")
    reasons = "、".join(resp.low_reasons or [])
    return resp.comment or f"满意度调查低分({reasons})"


async def create(ctx: Ctx, data: s.ComplaintCreate, idempotency_key: str | None = None) -> Complaint:
    now = ctx.runtime.clock()
    p = ctx.principal
    if data.subtype is not None and data.subtype not in s.SUBTYPES[data.category]:
        raise InvalidField("body.subtype", f"not a sub-type of {data.category}: "
                                           f"{', '.join(s.SUBTYPES[data.category])}")
    async with ctx.session.begin():
        key = _key(p, idempotency_key)
        if key is not None:
            existing = await ctx.session.scalar(sa.select(Complaint.id).where(
                Complaint.tenant_id == p.tenant_id, Complaint.idempotency_key == key))
            if existing is not None:
                raise Conflict("A complaint was already taken in with this Idempotency-Key.", existing_id=existing)
        subj = await _subject(ctx, data)
        channel = data.channel or ("survey" if subj.response else None)
        if channel is None:
            raise InvalidField("body.channel", "required")
        description = _description(data, subj.response)
        rules = await rules_for(ctx.session, p.tenant_id)
        nature = data.nature or CHANNEL_NATURE.get(channel, "ordinary")
        repeats = await _repeats(ctx, subj.customer_id, data.complainant_phone, now)
        severity = computed_severity(Facts(data.kind, data.category, nature, data.safety, data.demanded_amount,
                                           repeats), rules)
        if data.severity is not None:
            severity = higher(data.severity, severity)
        major = data.kind == "major" or is_major(data.category, nature, severity, data.demanded_amount, rules)
        first_due, resolution_due = due_times(now, severity, rules)
        c = Complaint(
            id=new_id(), tenant_id=p.tenant_id, store_id=subj.store_id,
            number=await next_number(ctx.session, subj.store_id, now), idempotency_key=key,
            customer_id=subj.customer_id, vehicle_id=subj.vehicle_id,
            complainant_name=data.complainant_name, complainant_phone=data.complainant_phone, channel=channel,
            kind="major" if major else data.kind, category=data.category, problems=list(data.problems),
            subtype=data.subtype, nature=nature, severity=severity, safety=data.safety, status="ongoing",
            description=description, demands=data.demands, demanded_amount=data.demanded_amount,
            oem_case_no=data.oem_case_no, response_id=subj.response.id if subj.response else None,
            about_type=subj.about_type, about_id=subj.about_id, owner_id=p.subject, opened_by=p.subject,
            opened_at=now, first_response_due=first_due, resolution_due=resolution_due,
            promised_reply_at=data.promised_reply_at, escalation_level=0, escalate_at=first_due, remedies=[],
            goodwill_amount=Decimal(0), goodwill_status="none", version=1, updated_at=now)
        ctx.session.add(c)
        _log(ctx, c, "opened", None, now, channel=channel, severity=severity, repeats=repeats)
        await ctx.session.flush()
        _audit(ctx, "create", c, None)
        publish(ctx.session, ctx.outbox, c, ComplaintOpened, opened_at=now, first_response_due=first_due,
                resolution_due=resolution_due)
        if data.safety:
            await _escalate(ctx, c, 2, "safety", "safety or injury involved: the service manager is told at once",
                            rules, now)
    return c


async def _escalate(ctx: Ctx, c: Complaint, level: int, breach: str, reason: str, rules: PolicyRules,
                    now: datetime) -> None:
    escalate(ctx.session, ctx.outbox, c, level, breach, reason, await staff_of(ctx.session, c.tenant_id), rules,
             now, actor_id=ctx.principal.subject)


# --- working the case -----------------------------------------------------------------------------------


async def respond(ctx: Ctx, complaint_id: uuid.UUID, data: s.RespondWrite, if_match: str | None) -> Complaint:
    """A contact with the customer; the first one meets the first-response SLA."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        now, before = ctx.runtime.clock(), snapshot(c)
        first = c.first_responded_at is None
        if first:
            c.first_responded_at = now
            if c.escalation_level == 0 and c.escalate_at is not None:
                c.escalate_at = next_due(c)
        if data.promised_reply_at is not None:
            c.promised_reply_at = data.promised_reply_at
        _touch(c, now)
        _log(ctx, c, "response", data.body, now, first=first,
             promised_reply_at=data.promised_reply_at.isoformat() if data.promised_reply_at else None)
        _audit(ctx, "respond", c, before)
    return c


async def add_note(ctx: Ctx, complaint_id: uuid.UUID, data: s.NoteWrite) -> Complaint:
    """Any staff member of the store adds to the log; only an investigation result changes the case, and only
    its owner or a manager records one (403)."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, None, handler=False, match=False)
        now = ctx.runtime.clock()
        if data.investigation is not None:
            if not may_handle(ctx.principal, c):
                raise Forbidden("Only the case owner or a manager records the investigation.")
            before = snapshot(c)
            c.investigation = data.investigation
            _touch(c, now)
            _audit(ctx, "investigation", c, before)
        _log(ctx, c, "note", data.body, now)
    return c


def _holds_store(member: StaffView | None, c: Complaint) -> bool:
    if member is None or member.tenant_id != c.tenant_id or not member.active:
        return False
    return str(c.store_id) in member.store_ids or bool(set(member.roles) & {str(r) for r in TENANT_WIDE})


async def transfer(ctx: Ctx, complaint_id: uuid.UUID, data: s.TransferWrite, if_match: str | None) -> Complaint:
    """The only way ownership changes (首问负责制), always with a reason on the log."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        if data.to_id == c.owner_id:
            raise InvalidField("body.to_id", "already the owner")
        if not _holds_store(await ctx.session.get(StaffView, data.to_id), c):
            raise InvalidField("body.to_id", "no active staff member of this store")
        now, before = ctx.runtime.clock(), snapshot(c)
        from_id, c.owner_id = c.owner_id, data.to_id
        _touch(c, now)
        _log(ctx, c, "transfer", data.reason, now, from_id=str(from_id) if from_id else None, to_id=str(data.to_id))
        _audit(ctx, "transfer", c, before)
    return c


async def set_status(ctx: Ctx, complaint_id: uuid.UUID, data: s.StatusWrite, if_match: str | None) -> Complaint:
    """On-going ↔ In process; Hold pauses the SLA watch and resuming shifts every open deadline by the pause."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match, match=False)
        if data.status == "hold" and not data.reason:
            raise InvalidField("body.reason", "a hold needs a reason")
        if data.status == c.status:
            return c
        now, before = ctx.runtime.clock(), snapshot(c)
        if data.status == "hold":
            c.held_from, c.held_at, c.held_watch_at, c.escalate_at = c.status, now, c.escalate_at, None
        elif c.status == "hold":
            _resume(c, now)
        c.status = data.status
        _touch(c, now)
        _log(ctx, c, "status", data.reason, now, **{"from": before["status"], "to": data.status})
        _audit(ctx, "status", c, before)
    return c


def _resume(c: Complaint, now: datetime) -> None:
    """End a hold: the deadlines still open and the watch's next look move on by the pause, which is added to
    the case's held time (so deadlines computed later from intake keep it)."""
    pause = now - (c.held_at or now)
    c.held_seconds = (c.held_seconds or 0) + int(pause.total_seconds())
    if c.first_responded_at is None:
        c.first_response_due += pause
    if c.resolved_at is None:
        c.resolution_due += pause
    elif c.closing_due is not None:
        c.closing_due += pause
    c.escalate_at = c.held_watch_at + pause if c.held_watch_at is not None else None
    c.held_from = c.held_at = c.held_watch_at = None


async def raise_severity(ctx: Ctx, complaint_id: uuid.UUID, data: s.SeverityWrite,
                         if_match: str | None) -> Complaint:
    """Severity only goes up; the deadlines shorten (never lengthen) to the new severity's SLA from intake plus
    the time held. During a hold the look the watch resumes with moves up with them."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        new_safety = bool(data.safety) and not c.safety
        severity = "critical" if new_safety else data.severity
        if s.SEVERITIES.index(severity) <= s.SEVERITIES.index(c.severity) and not new_safety:
            raise InvalidField("body.severity", f"must be higher than the current {c.severity}")
        now, before = ctx.runtime.clock(), snapshot(c)
        rules = await rules_for(ctx.session, c.tenant_id)
        c.severity, c.safety = higher(severity, c.severity), c.safety or new_safety
        first_due, resolution_due = due_times(c.opened_at, c.severity, rules,
                                              timedelta(seconds=c.held_seconds or 0))
        if c.first_responded_at is None:
            c.first_response_due = min(c.first_response_due, first_due)
        if c.resolved_at is None:
            c.resolution_due = min(c.resolution_due, resolution_due)
        if c.status == "hold":
            # times of a held case are kept as if the hold had not begun: resuming adds the pause to them all
            due = pending_due(c) if c.escalation_level < TOP_LEVEL else None
            c.held_watch_at = min((d for d in (c.held_watch_at, due) if d is not None), default=None)
        elif (due := next_due(c)) is not None:
            c.escalate_at = min(c.escalate_at, due) if c.escalate_at is not None else due
        if is_major(c.category, c.nature, c.severity, None, rules):
            c.kind = "major"
        _touch(c, now)
        _log(ctx, c, "severity", data.reason, now, **{"from": before["severity"], "to": c.severity})
        _audit(ctx, "severity", c, before)
        if new_safety and c.escalation_level < 2:
            await _escalate(ctx, c, 2, "safety", "safety or injury involved: the service manager is told at once",
                            rules, now)
    return c


async def offer_remedies(ctx: Ctx, complaint_id: uuid.UUID, data: s.RemediesWrite,
                         if_match: str | None) -> Complaint:
    """The packages put to the customer (replacing an earlier offer); each says whether its goodwill needs a
    manager's approval."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        if c.resolved_at is not None:
            raise Conflict("The complaint is already resolved.")
        now, before = ctx.runtime.clock(), snapshot(c)
        limit = (await rules_for(ctx.session, c.tenant_id)).goodwill_limit
        c.remedies = [{"label": r.label, "description": r.description, "goodwill_amount": str(r.goodwill_amount),
                       "needs_approval": r.goodwill_amount > limit} for r in data.remedies]
        _touch(c, now)
        _log(ctx, c, "remedies", None, now, remedies=c.remedies)
        _audit(ctx, "remedies", c, before)
    return c


async def request_goodwill(ctx: Ctx, complaint_id: uuid.UUID, data: s.GoodwillWrite,
                           if_match: str | None) -> Complaint:
    """Within the group's limit the amount is granted at once; above it the case becomes major and waits for a
    manager's approval."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        if c.resolved_at is not None:
            raise Conflict("The complaint is already resolved.")
        if c.goodwill_status == "pending":
            raise Conflict("A goodwill request is waiting for a manager's decision.")
        now, before = ctx.runtime.clock(), snapshot(c)
        limit = (await rules_for(ctx.session, c.tenant_id)).goodwill_limit
        above = data.amount > limit
        c.goodwill_amount, c.goodwill_requested_by, c.goodwill_decided_by = data.amount, ctx.principal.subject, None
        c.goodwill_status = "pending" if above else "approved"
        if above:
            c.kind = "major"
        _touch(c, now)
        _log(ctx, c, "goodwill", data.reason, now, decision="requested" if above else "within_limit",
             amount=str(data.amount), limit=str(limit))
        _audit(ctx, "goodwill.request", c, before)
    return c


async def decide_goodwill(ctx: Ctx, complaint_id: uuid.UUID, approve: bool, note: str | None,
                          if_match: str | None) -> Complaint:
    """A manager (not the requester) approves or rejects a pending request (R-PERM-03)."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match, handler=False)
        if c.goodwill_status != "pending":
            raise Conflict(f"No goodwill request is waiting for a decision ({c.goodwill_status}).")
        if c.goodwill_requested_by == ctx.principal.subject:
            raise Forbidden("Another manager must decide on your own goodwill request.")
        now, before = ctx.runtime.clock(), snapshot(c)
        c.goodwill_status = "approved" if approve else "rejected"
        c.goodwill_decided_by = ctx.principal.subject
        _touch(c, now)
        _log(ctx, c, "goodwill", note, now, decision=c.goodwill_status, amount=str(c.goodwill_amount))
        _audit(ctx, f"goodwill.{'approve' if approve else 'reject'}", c, before)
    return c


def _offered(c: Complaint, remedy: str) -> dict[str, Any] | None:
    """The offered package the chosen remedy names (by its label, or its description word for word)."""
    return next((r for r in c.remedies or [] if remedy in (r.get("label"), r.get("description"))), None)


async def resolve(ctx: Ctx, complaint_id: uuid.UUID, data: s.ResolveWrite, if_match: str | None) -> Complaint:
    """The customer's chosen remedy was carried out. A remedy naming an offered package costs that package's
    goodwill (a different declared amount is refused). Goodwill above the limit must be approved (at least this
    amount) and makes the case major; while a request is pending nothing resolves. The watch then looks at the
    closing deadline."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match)
        if c.resolved_at is not None:
            raise Conflict("The complaint is already resolved.")
        if c.goodwill_status == "pending":
            raise Conflict("The goodwill request is waiting for a manager's approval.")
        limit = (await rules_for(ctx.session, c.tenant_id)).goodwill_limit
        amount = data.goodwill_amount
        if (package := _offered(c, data.remedy)) is not None:
            price = Decimal(package["goodwill_amount"])
            if "goodwill_amount" in data.model_fields_set and amount != price:
                raise InvalidField("body.goodwill_amount", f"{package['label']} was offered with goodwill {price}: "
                                                           "give that amount or leave it out")
            amount = price
        if amount > limit and not (c.goodwill_status == "approved" and amount <= c.goodwill_amount):
            raise Conflict(f"Goodwill of {amount} is above {limit}: it needs a manager's approval first "
                           "(POST …/goodwill).")
        now, before = ctx.runtime.clock(), snapshot(c)
        if c.status == "hold":
            _resume(c, now)
        if amount > limit:
            c.kind = "major"
        c.chosen_remedy, c.goodwill_amount, c.resolved_at = data.remedy, amount, now
        c.first_responded_at = c.first_responded_at or now
        if data.investigation:
            c.investigation = data.investigation
        c.status, c.closing_due = "in_process", closing_due(c, now)
        c.escalate_at = next_due(c)
        _touch(c, now)
        _log(ctx, c, "resolved", data.remedy, now, goodwill_amount=str(amount),
             package=package["label"] if package else None, closing_due=c.closing_due.isoformat())
        _audit(ctx, "resolve", c, before)
        publish(ctx.session, ctx.outbox, c, ComplaintResolved, remedy=data.remedy, goodwill_amount=float(amount),
                resolved_at=now)
    return c


async def close(ctx: Ctx, complaint_id: uuid.UUID, data: s.CloseWrite, if_match: str | None) -> Complaint:
    """结案 with root cause, action taken and the customer's feedback; the closing manager signs off (the owner
    is the receiver). followup_svc plans the revisit and the re-survey from the event."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match, handler=False)
        if c.resolved_at is None:
            raise Conflict("Resolve the complaint (the customer's chosen remedy) before closing it.")
        now, before = ctx.runtime.clock(), snapshot(c)
        c.root_cause, c.action_taken, c.staff_verdict = data.root_cause, data.action_taken, data.staff_verdict
        c.feedback_result, c.feedback_speed = data.feedback_result, data.feedback_speed
        c.signed_off_by, c.closed_at, c.status, c.escalate_at = ctx.principal.subject, now, "closed", None
        c.held_from = c.held_at = c.held_watch_at = None
        _touch(c, now)
        _log(ctx, c, "closed", data.note, now, feedback_result=data.feedback_result,
             feedback_speed=data.feedback_speed)
        _audit(ctx, "close", c, before)
        publish(ctx.session, ctx.outbox, c, ComplaintClosed, closed_at=now, feedback_result=data.feedback_result,
                feedback_speed=data.feedback_speed, signed_off_by=ctx.principal.subject)
    return c


async def escalate_now(ctx: Ctx, complaint_id: uuid.UUID, data: s.EscalateWrite, if_match: str | None) -> Complaint:
    """Anyone of the store reports a case up early (urgent or safety cases go to the service manager at once)."""
    async with ctx.session.begin():
        c = await _load(ctx, complaint_id, if_match, handler=False, match=False)
        if c.escalation_level >= TOP_LEVEL:
            raise Conflict("The complaint is already at the top of the escalation chain.")
        level = data.to_level or c.escalation_level + 1
        if level <= c.escalation_level:
            raise InvalidField("body.to_level", f"must be above the current level {c.escalation_level}")
        now, before = ctx.runtime.clock(), snapshot(c)
        await _escalate(ctx, c, level, "manual", data.reason, await rules_for(ctx.session, c.tenant_id), now)
        _audit(ctx, "escalate", c, before)
    return c


# --- reads ----------------------------------------------------------------------------------------------


def view(c: Complaint, principal: Principal, now: datetime) -> s.ComplaintRead:
    body = s.ComplaintRead.model_validate(c)
    body.overdue = overdue(c, now)
    if not principal.sees_pii:
        body.complainant_name = mask_name(body.complainant_name) if body.complainant_name else None
        body.complainant_phone = mask_number(body.complainant_phone) if body.complainant_phone else None
        mask_complaint(body)
    return body


async def detail(ctx: Ctx, complaint_id: uuid.UUID) -> s.ComplaintDetail:
    c = await get_scoped(ctx.session, Complaint, ctx.principal, complaint_id, "Complaint")
    entries = (await ctx.session.scalars(sa.select(ComplaintEntry).where(ComplaintEntry.complaint_id == c.id)
                                         .order_by(ComplaintEntry.created_at, ComplaintEntry.id))).all()
    out = s.ComplaintDetail(**view(c, ctx.principal, ctx.runtime.clock()).model_dump(),
                            entries=[s.EntryRead.model_validate(e) for e in entries])
    if not ctx.principal.sees_pii:
        for e in out.entries:
            mask_entry(e)
    return out


@dataclass
class ListFilter:
    store_id: uuid.UUID | None = None
    statuses: list[str] | None = None
    severity: str | None = None
    kind: str | None = None
    owner_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    goodwill_status: str | None = None
    overdue: bool | None = None


async def list_complaints(ctx: Ctx, params: PageParams, f: ListFilter) -> list[Complaint]:
    if f.store_id is not None:
        ensure_store(ctx.principal, f.store_id)
    stmt = where_given(scoped(sa.select(Complaint), Complaint, ctx.principal),
                       (Complaint.store_id, f.store_id), (Complaint.severity, f.severity), (Complaint.kind, f.kind),
                       (Complaint.owner_id, f.owner_id), (Complaint.customer_id, f.customer_id),
                       (Complaint.goodwill_status, f.goodwill_status))
    if f.statuses:
        stmt = stmt.where(Complaint.status.in_(f.statuses))
    if f.overdue is not None:
        now = ctx.runtime.clock()
        late = sa.and_(Complaint.status.not_in(("closed", "hold")), sa.or_(
            sa.and_(Complaint.first_responded_at.is_(None), Complaint.first_response_due <= now),
            sa.and_(Complaint.resolved_at.is_(None), Complaint.resolution_due <= now),
            sa.and_(Complaint.resolved_at.is_not(None), Complaint.closing_due <= now)))
        stmt = stmt.where(late if f.overdue else sa.not_(late))
    return list((await ctx.session.scalars(paginate(stmt, Complaint.id, params))).all())
