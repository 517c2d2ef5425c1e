"""What the survey and complaint exports read: one statement each, streamed from a server-side cursor, and the
conversion of a database row to an export row (times in the store's own zone, personal data masked by role).

The statements filter with the reports' :class:`~survey_svc.reports.scope.Scope` (tenant, stores, store-local
days), so an export holds exactly the records the report of the same period counts, and are served by the same
``(tenant_id, store_id, <time>)`` indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from survey_svc.privacy import masked_text
from survey_svc.complaints.sla import overdue
from survey_svc.models import Complaint, Response, StaffView
from survey_svc.reports.scope import Scope
from survey_svc.surveys.schemas import RESPONSE_FIELDS
from shared.auth.principal import Principal
from shared.calendar import zone
from shared.http.export import local_iso
from shared.pii import mask_name, mask_number


def _zones(scope: Scope) -> Callable[[uuid.UUID], Any]:
    """Store id -> its tzinfo (a store the read model has not heard of yet: the default zone)."""
    zones = {sid: zone(scope.zone_of(sid)) for sid in scope.stores}
    fallback = zone(scope.zone_of(uuid.UUID(int=0)))
    return lambda sid: zones.get(sid, fallback)


def _codes(scope: Scope) -> dict[uuid.UUID, str | None]:
    return {sid: (view.code if view is not None else None) for sid, view in scope.stores.items()}


# --- survey responses ---------------------------------------------------------------------------------------

#: Columns of the response export, before the per-item scores. No names, phones or free text (personal data).
RESPONSE_COLUMNS = list(RESPONSE_FIELDS)


def responses(scope: Scope, survey: str | None) -> sa.Select[Any]:
    """The period's responses (by store-local answer day), oldest first."""
    stmt = sa.select(
        Response.id, Response.invitation_id, Response.store_id, Response.survey_key, Response.survey_version,
        Response.answered_at, Response.channel, Response.about_type, Response.about_id, Response.customer_id,
        Response.vehicle_id, Response.staff_id, Response.satisfaction_index, Response.overall_score,
        Response.nps_score, Response.nps_class, Response.low_score, Response.flags, Response.review_status,
        Response.item_scores).where(scope.within(Response, Response.answered_at))
    if survey is not None:
        stmt = stmt.where(Response.survey_key == survey)
    return stmt.order_by(Response.answered_at, Response.id)


def item_column(item: str) -> str:
    """An item's column: its id, unless that is one of the response's own columns (surveys saved before such ids
    were refused); then ``item_<id>``, so it never overwrites them."""
    return f"item_{item}" if item in RESPONSE_COLUMNS else item


def response_row(scope: Scope, items: list[str]) -> Callable[[Any], dict[str, Any]]:
    """Row -> export row: the columns above, then one score (0–100) per item (empty: not asked or not answered)."""
    codes, zone_of = _codes(scope), _zones(scope)
    columns = [(item, item_column(item)) for item in items]

    def convert(r: Any) -> dict[str, Any]:
        scores = r.item_scores or {}
        return {"response_id": r.id, "invitation_id": r.invitation_id, "store_code": codes.get(r.store_id),
                "store_id": r.store_id, "survey": r.survey_key, "survey_version": r.survey_version,
                "answered_at_local": local_iso(r.answered_at, zone_of(r.store_id)), "channel": r.channel,
                "about_type": r.about_type, "about_id": r.about_id, "customer_id": r.customer_id,
                "vehicle_id": r.vehicle_id, "staff_id": r.staff_id, "satisfaction_index": r.satisfaction_index,
                "overall_score": r.overall_score, "nps_score": r.nps_score, "nps_class": r.nps_class,
                "low_score": r.low_score, "flags": list(r.flags or []), "review_status": r.review_status,
                **{column: scores.get(item) for item, column in columns}}

    return convert


# --- complaint cases ----------------------------------------------------------------------------------------

#: Columns of the complaint export. Times are ISO 8601 in the store's zone (with its offset).
COMPLAINT_COLUMNS = [
    "number", "complaint_id", "store_code", "store_id", "opened_at", "status", "kind", "category", "subtype",
    "problems", "nature", "severity", "safety", "channel", "customer_id", "vehicle_id", "complainant_name",
    "complainant_phone", "owner_id", "owner_name", "escalation_level", "first_response_due", "first_responded_at",
    "first_response_met", "resolution_due", "resolved_at", "resolution_met", "sla_met", "overdue", "closed_at",
    "resolution", "goodwill_amount", "goodwill_status", "root_cause", "action_taken", "feedback_result",
    "feedback_speed", "oem_case_no", "response_id", "about_type", "about_id", "description", "demands"]


def complaints(scope: Scope, statuses: list[str] | None) -> sa.Select[Any]:
    """The cases opened in the period (store-local days), oldest first, with their owner's name."""
    c = Complaint
    stmt = sa.select(
        c.id, c.number, c.store_id, c.opened_at, c.status, c.kind, c.category, c.subtype, c.problems, c.nature,
        c.severity, c.safety, c.channel, c.customer_id, c.vehicle_id, c.complainant_name, c.complainant_phone,
        c.owner_id, StaffView.name.label("owner_name"), c.escalation_level, c.first_response_due,
        c.first_responded_at, c.resolution_due, c.resolved_at, c.closing_due, c.closed_at, c.chosen_remedy,
        c.goodwill_amount, c.goodwill_status, c.root_cause, c.action_taken, c.feedback_result, c.feedback_speed,
        c.oem_case_no, c.response_id, c.about_type, c.about_id, c.description, c.demands, c.held_at,
    ).outerjoin(StaffView, sa.and_(StaffView.id == c.owner_id, StaffView.tenant_id == c.tenant_id)) \
        .where(scope.within(c, c.opened_at))
    if statuses:
        stmt = stmt.where(c.status.in_(statuses))
    return stmt.order_by(c.opened_at, c.id)


def _met(done: datetime | None, due: datetime, now: datetime) -> bool | None:
    """Whether a deadline was kept: done by then; missed once it passed undone; None while it still runs."""
    if done is not None:
        return done <= due
    return False if due < now else None


def _all_met(*values: bool | None) -> bool | None:
    if False in values:
        return False
    return None if None in values else True


def complaint_row(scope: Scope, principal: Principal, now: datetime) -> Callable[[Any], dict[str, Any]]:
    """Row -> export row. SLA as the complaint report counts it: first response by its due time, resolution (or
    closure) by its due time. Complainant name, phone and phones in the free text are masked unless the caller
    sees personal data."""
    codes, zone_of = _codes(scope), _zones(scope)
    pii = principal.sees_pii

    def convert(r: Any) -> dict[str, Any]:
        tz = zone_of(r.store_id)
        clock = r.held_at or now  # on hold, the deadlines' clock stopped when the hold began
        first = _met(r.first_responded_at, r.first_response_due, clock)
        resolution = _met(r.resolved_at or r.closed_at, r.resolution_due, clock)
        name, phone, text = r.complainant_name, r.complainant_phone, masked_text(r, pii)
        if not pii:
            name = mask_name(name) if name else name
            phone = mask_number(phone) if phone else phone
        return {
            "number": r.number, "complaint_id": r.id, "store_code": codes.get(r.store_id), "store_id": r.store_id,
            "opened_at": local_iso(r.opened_at, tz), "status": r.status, "kind": r.kind, "category": r.category,
            "subtype": r.subtype, "problems": list(r.problems or []), "nature": r.nature, "severity": r.severity,
            "safety": r.safety, "channel": r.channel, "customer_id": r.customer_id, "vehicle_id": r.vehicle_id,
            "complainant_name": name, "complainant_phone": phone, "owner_id": r.owner_id,
            "owner_name": r.owner_name, "escalation_level": r.escalation_level,
            "first_response_due": local_iso(r.first_response_due, tz),
            "first_responded_at": local_iso(r.first_responded_at, tz), "first_response_met": first,
            "resolution_due": local_iso(r.resolution_due, tz), "resolved_at": local_iso(r.resolved_at, tz),
            "resolution_met": resolution, "sla_met": _all_met(first, resolution), "overdue": overdue(r, now),
            "closed_at": local_iso(r.closed_at, tz), "resolution": text["chosen_remedy"],
            "goodwill_amount": r.goodwill_amount, "goodwill_status": r.goodwill_status,
            "root_cause": text["root_cause"], "action_taken": text["action_taken"],
            "feedback_result": r.feedback_result, "feedback_speed": r.feedback_speed, "oem_case_no": r.oem_case_no,
            "response_id": r.response_id, "about_type": r.about_type, "about_id": r.about_id,
            "description": text["description"], "demands": text["demands"]}

    return convert
