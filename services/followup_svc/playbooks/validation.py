"""Checks on a rule that look beyond its own definition: schedule sanity, chained rules and their cycles.

The pydantic schema checks a definition on its own; these need the rest of the tenant's playbook (does the
rule a chain follows exist? does a chain loop back?), and each failure is a 422 naming the field.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from followup_svc.models import Rule
from followup_svc.models.playbook import TENANT_SCOPE
from followup_svc.playbooks.schemas import Offset, RuleDefinition
from followup_svc.scheduling import timing
from shared.errors import InvalidField

#: The most occurrences one rule may plan for one subject (fixed offsets plus recurrence cycles).
MAX_STEPS = 240
DEFINITION = "body.definition"


def _days(offset: Offset, month_days: int) -> float:
    return offset.months * month_days + offset.days + offset.hours / 24 + offset.minutes / 1440


def _later(a: Offset, b: Offset) -> bool:
    """``b`` lies strictly after ``a`` from any anchor, whatever the length (28-31 days) of the months crossed."""
    return all(_days(b, n) > _days(a, n) for n in (28, 31))


def check_schedule(rdef: RuleDefinition) -> None:
    """Offsets in order (strictly later each time after the anchor; no repeats before a date), a recurrence for
    cadence rules, and at most ``MAX_STEPS`` steps."""
    schedule = rdef.schedule
    field = f"{DEFINITION}.schedule.offsets"
    offsets = schedule.offsets
    if schedule.direction == "after":
        for i in range(1, len(offsets)):
            if not _later(offsets[i - 1], offsets[i]):
                raise InvalidField(field, f"offsets must be strictly increasing: offset {i} is not later than "
                                          f"offset {i - 1} (a month counts as 28 to 31 days)")
    else:
        seen: dict[tuple[int, int, int, int], int] = {}
        for i, o in enumerate(offsets):
            distance = (o.months, o.days, o.hours, o.minutes)
            if distance in seen:
                raise InvalidField(field, f"offset {i} repeats offset {seen[distance]}")
            seen[distance] = i
    if rdef.trigger == "customer.intent" and schedule.repeat is None:
        raise InvalidField(f"{DEFINITION}.schedule.repeat",
                           "a customer.intent cadence needs a repeat (it runs while the intent level holds)")
    steps = timing.total_steps(schedule)
    if steps > MAX_STEPS:
        raise InvalidField(f"{DEFINITION}.schedule.repeat.count",
                           f"the rule would plan {steps} occurrences per subject; at most {MAX_STEPS}")


async def _active_rules(session: AsyncSession, tenant_id: uuid.UUID) -> list[tuple[str, str, str, str | None]]:
    """(scope, key, trigger, after_rule) of every active version of the tenant (read from the stored JSON)."""
    rows = await session.execute(sa.select(Rule.scope, Rule.key, Rule.trigger, Rule.definition).where(
        Rule.tenant_id == tenant_id, Rule.retired_at.is_(None)))
    found = []
    for scope, key, trigger, definition in rows:
        conditions = (definition or {}).get("conditions") or {}
        after = conditions.get("after_rule") if trigger == "rule.fired" else None
        found.append((scope, key, trigger, after if isinstance(after, str) else None))
    return found


def find_cycle(edges: dict[str, str], start: str) -> list[str] | None:
    """Follow ``key -> the rule it runs after`` from ``start``; the loop when it comes back to ``start``."""
    path = [start]
    node = edges.get(start)
    while node is not None and node not in path:
        path.append(node)
        node = edges.get(node)
    return [*path, start] if node == start else None


async def check_chain(session: AsyncSession, tenant_id: uuid.UUID, scope: str, key: str,
                      rdef: RuleDefinition) -> None:
    """A chained rule (trigger ``rule.fired``) follows an active rule of the group, and no chain loops back.

    Chains are resolved per store (the group's rules with the store's overrides), so a group rule is checked in
    the group's set and in every store that does not override it; a store override in its own store. Disabled
    rules count as links too: enabling one later must not close a loop nobody checked.
    """
    field = f"{DEFINITION}.conditions.after_rule"
    rules = await _active_rules(session, tenant_id)
    after = rdef.conditions.after_rule if rdef.trigger == "rule.fired" else None
    if after is not None and after != key and not any(s == TENANT_SCOPE and k == after for s, k, _, _ in rules):
        raise InvalidField(field, f"no active rule {after!r} in this dealer group's playbook")
    if after is None:
        return  # the new version adds no link, so it cannot close a loop
    group = {k: a for s, k, _, a in rules if s == TENANT_SCOPE}
    overrides: dict[str, dict[str, str | None]] = {}
    for s, k, _, a in rules:
        if s != TENANT_SCOPE:
            overrides.setdefault(s, {})[k] = a
    if scope == TENANT_SCOPE:
        views = [{}] + [o for o in overrides.values() if key not in o]
    else:
        views = [overrides.get(scope, {})]
    for view in views:
        effective = {**group, **view, key: after}
        edges = {k: a for k, a in effective.items() if a is not None}
        cycle = find_cycle(edges, key)
        if cycle is not None:
            raise InvalidField(field, "chained rules would loop: " + " runs after ".join(cycle))


async def check_rule(session: AsyncSession, tenant_id: uuid.UUID, scope: str, key: str,
                     rdef: RuleDefinition) -> None:
    """Every cross-rule check for writing ``rdef`` as the active version of ``key`` in ``scope``."""
    check_schedule(rdef)
    await check_chain(session, tenant_id, scope, key, rdef)
