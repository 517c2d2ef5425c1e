"""Severity, kind and SLA times of a complaint (DOMAIN §10.3, §6.5; the hours are the group's policy).

Severity = f(category, nature, safety, money asked for, repeat complaints): a grumble starts low, a complaint
medium; a major category, a consumer-association case, money above the goodwill limit and each earlier complaint
of the last 12 months (two at most) raise it a level, media exposure two; a safety case is critical. Staff may
raise it, never lower it below what the facts say. The case is *major* (重大投诉) when its category is major, when
a media or consumer-association case is high or critical, or when goodwill (asked or granted) is above the limit
(R-PERM-04).

Deadlines run from intake plus the time spent on hold. A resolved case is still watched until it is closed: by
its resolution deadline, or ``CLOSING_WINDOW`` after the resolution when that deadline is nearer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from survey_svc.complaints.schemas import SEVERITIES
from survey_svc.models import Complaint
from survey_svc.policy import PolicyRules

#: Default nature by intake channel (a letter from the consumer association is such a case).
CHANNEL_NATURE = {"media": "media_risk", "consumer_association": "consumer_association",
                  "authority": "consumer_association"}
#: The SLA watch stops here (director / general manager).
TOP_LEVEL = 3
#: A case resolved at or after its resolution deadline still has this long to be closed (feedback, sign-off).
CLOSING_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class Facts:
    kind: str
    category: str
    nature: str
    safety: bool
    amount: Decimal | None
    repeats: int


def computed_severity(f: Facts, rules: PolicyRules) -> str:
    if f.safety:
        return "critical"
    points = 0 if f.kind == "grumble" else 1
    points += 1 if f.category == "major" else 0
    points += {"media_risk": 2, "consumer_association": 1}.get(f.nature, 0)
    points += 1 if f.amount is not None and f.amount > rules.goodwill_limit else 0
    points += min(f.repeats, 2)
    return SEVERITIES[min(points, len(SEVERITIES) - 1)]


def higher(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


def is_major(category: str, nature: str, severity: str, amount: Decimal | None, rules: PolicyRules) -> bool:
    return (category == "major" or (nature != "ordinary" and severity in ("high", "critical"))
            or (amount is not None and amount > rules.goodwill_limit))


def due_times(opened_at: datetime, severity: str, rules: PolicyRules, held: timedelta = timedelta(0)
              ) -> tuple[datetime, datetime]:
    """First response and resolution deadlines: intake + the severity's SLA + the time already held."""
    sla = rules.sla(severity)
    return (opened_at + held + timedelta(hours=sla.first_response_hours),
            opened_at + held + timedelta(hours=sla.resolution_hours))


def closing_due(c: Complaint, resolved_at: datetime) -> datetime:
    """A resolved case is closed by its resolution deadline, but never in less than ``CLOSING_WINDOW`` (the
    customer's feedback takes a call)."""
    return max(c.resolution_due, resolved_at + CLOSING_WINDOW)


def pending_due(c: Complaint) -> datetime | None:
    """The deadline the case works towards now, hold or not: first response, resolution, then closing."""
    if c.status == "closed":
        return None
    if c.resolved_at is not None:
        return c.closing_due
    return c.first_response_due if c.first_responded_at is None else c.resolution_due


def next_due(c: Complaint) -> datetime | None:
    """The next SLA deadline the watch looks at (None: on hold, closed or at the top of the chain)."""
    if c.status == "hold" or c.escalation_level >= TOP_LEVEL:
        return None
    return pending_due(c)


def breach_of(c: Complaint, now: datetime) -> str | None:
    """Which deadline has passed, if any (held cases are paused; closed cases are done)."""
    if c.status in ("closed", "hold"):
        return None
    if c.first_responded_at is None and c.first_response_due <= now:
        return "first_response"
    if c.resolved_at is None and c.resolution_due <= now:
        return "resolution"
    if c.resolved_at is not None and c.closing_due is not None and c.closing_due <= now:
        return "closing"
    return None


def overdue(c: Complaint, now: datetime) -> bool:
    return breach_of(c, now) is not None
