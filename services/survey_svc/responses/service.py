"""Recording a response: validated against the invitation's survey version, scored, checked for integrity,
then answered / low-score events in the same transaction. One response per invitation (the row lock and the
unique invitation id make a double submit answer once)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from survey_svc.models import CustomerView, Invitation, Response
from survey_svc.invitations.service import contact_changed
from survey_svc.policy import PolicyRules, rules_for
from survey_svc.surveys import answers as ans
from survey_svc.surveys.store import definition_by_id
from shared.events.catalog.survey import SurveyAnswered, SurveyLowScore
from shared.ids import new_id
from shared.messaging.outbox import Outbox


class NotAnswerable(Exception):
    """The invitation cannot take an answer: ``state`` is ``answered``, ``expired`` or ``cancelled``."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass
class Submission:
    answers: dict
    channel: str = "web"
    recorded_by: uuid.UUID | None = None
    device_hash: str | None = None
    #: From the answer page's form (follow-up questions all shown without script): see ``answers.validate``.
    form: bool = False


def state_of(inv: Invitation, now: datetime) -> str:
    """``open``, ``answered``, ``expired`` or ``cancelled`` (an open link past its time is expired even before
    the worker marks it)."""
    if inv.status == "open" and inv.expires_at <= now:
        return "expired"
    return inv.status


async def _integrity_flags(session: AsyncSession, rules: PolicyRules, inv: Invitation, sub: Submission,
                           now: datetime) -> list[str]:
    """How scores get gamed (DOMAIN §9.5): one phone or one device answering for many customers, a contact
    changed around the survey, the rated staff member taking the answer down themselves."""
    device = sub.device_hash
    flags = set(inv.flags or [])
    since = now - timedelta(days=rules.integrity_days)
    customer = await session.get(CustomerView, inv.customer_id)
    if contact_changed(rules, customer, inv.created_at, now):
        flags.add("contact_changed")
    if customer is not None and customer.phone:
        sharing = await session.scalar(sa.select(sa.func.count(sa.distinct(CustomerView.id))).where(
            CustomerView.tenant_id == inv.tenant_id, CustomerView.phone == customer.phone,
            CustomerView.status == "active",
            sa.exists().where(Invitation.customer_id == CustomerView.id, Invitation.tenant_id == inv.tenant_id,
                              Invitation.created_at >= since)))
        if (sharing or 0) > rules.shared_phone_max:
            flags.add("shared_phone")
    if device is not None:
        others = await session.scalar(sa.select(sa.func.count(sa.distinct(Response.customer_id))).where(
            Response.tenant_id == inv.tenant_id, Response.device_hash == device, Response.answered_at >= since,
            Response.customer_id != inv.customer_id))
        if (others or 0) + 1 > rules.same_device_max:
            flags.add("same_device")
    if sub.channel == "phone" and inv.staff_id is not None and sub.recorded_by == inv.staff_id:
        flags.add("recorded_by_rated_staff")
    return sorted(flags)


async def submit(session: AsyncSession, outbox: Outbox, inv: Invitation, sub: Submission,
                 now: datetime) -> Response:
    """Record the answer to ``inv`` (locked by the caller). Raises :class:`NotAnswerable` or
    :class:`survey_svc.surveys.answers.AnswerErrors`."""
    state = state_of(inv, now)
    if state != "open":
        raise NotAnswerable(state)
    definition = await definition_by_id(session, inv.template_id)
    given = ans.validate(definition, sub.answers, form=sub.form)
    scored = ans.score(definition, given)
    rules = await rules_for(session, inv.tenant_id)
    reasons = rules.low_reasons(scored)
    flags = await _integrity_flags(session, rules, inv, sub, now)
    resp = Response(
        id=new_id(), tenant_id=inv.tenant_id, store_id=inv.store_id, invitation_id=inv.id,
        template_id=inv.template_id, survey_key=inv.survey_key, survey_version=inv.survey_version,
        customer_id=inv.customer_id, vehicle_id=inv.vehicle_id, about_type=inv.about_type, about_id=inv.about_id,
        staff_id=inv.staff_id, channel=sub.channel, recorded_by=sub.recorded_by, answers=given,
        item_scores=scored.item_scores, satisfaction_index=scored.satisfaction_index,
        overall_score=scored.overall_score, nps_score=scored.nps_score, nps_class=scored.nps_class,
        low_score=bool(reasons), low_reasons=reasons, comment=scored.comment, flags=flags,
        review_status="pending" if flags else "none", device_hash=sub.device_hash, answered_at=now)
    session.add(resp)
    inv.status, inv.answered_at, inv.remind_at = "answered", now, None
    facts = dict(invitation_id=inv.id, survey=inv.survey_key, survey_version=inv.survey_version,
                 customer_id=inv.customer_id, vehicle_id=inv.vehicle_id, about_type=inv.about_type,
                 about_id=inv.about_id, staff_id=inv.staff_id, response_id=resp.id, answered_at=now)
    outbox.append(session, SurveyAnswered(
        **facts, channel=sub.channel, satisfaction_index=scored.satisfaction_index, nps_score=scored.nps_score,
        nps_class=scored.nps_class, low_score=bool(reasons), flagged=bool(flags)),  # type: ignore[arg-type]
        tenant_id=inv.tenant_id, store_id=inv.store_id)
    if reasons:
        outbox.append(session, SurveyLowScore(
            **facts, satisfaction_index=scored.satisfaction_index, nps_score=scored.nps_score, reasons=reasons,
            comment=(scored.comment or "")[:500] or None), tenant_id=inv.tenant_id, store_id=inv.store_id)
    await session.flush()
    return resp
