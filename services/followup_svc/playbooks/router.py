from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from followup_svc.deps import CtxDep, IdempotencyKey, IfMatch
from followup_svc.models import Rule
from followup_svc.playbooks import service
from followup_svc.playbooks.schemas import KEY, RuleChangeResult, RuleCreate, RuleRead, RuleUpdate, Trigger
from shared.auth import require_roles
from shared.auth.roles import STAFF
from shared.errors import problem_responses
from shared.http.etag import etag_for, tagged

router = APIRouter(prefix="/api/v1/playbook/rules", tags=["playbooks"], responses=problem_responses(401, 422))
can_read = require_roles(*STAFF)
can_write = require_roles(*service.WRITERS)
RuleKey = Annotated[str, Path(pattern=KEY.pattern, max_length=60, description="The rule's key.")]
StoreQuery = Annotated[uuid.UUID | None, Query(description="A store of yours: its override (or effective rule).")]


def _location(rule: Rule) -> str:
    suffix = f"?store_id={rule.scope}" if rule.scope != "*" else ""
    return f"/api/v1/playbook/rules/{rule.key}{suffix}"


def _changed(rule: Rule, counts: service.PendingCounts, response: Response) -> RuleChangeResult:
    response.headers["ETag"] = etag_for(rule.version)
    return RuleChangeResult.model_validate({**RuleRead.model_validate(rule).model_dump(),
                                            "pending_kept": counts.kept, "pending_rescheduled": counts.rescheduled,
                                            "pending_cancelled": counts.cancelled})


@router.get("", response_model=list[RuleRead], dependencies=[can_read], responses=problem_responses(404))
async def list_rules(ctx: CtxDep, store_id: StoreQuery = None,
                     include_retired: Annotated[bool, Query(description="Every version, not just those in force.")]
                     = False,
                     trigger: Annotated[Trigger | None, Query(description="Only rules of this trigger.")] = None
                     ) -> list[Rule]:
    """The dealer group's rules in force, by key. With `store_id` (a store of yours): that store's effective set,
    where the store's overrides (`scope` = the store id) replace the group rule of the same key. With
    `include_retired`: every version of those scopes. Disabled rules are listed (`enabled` false)."""
    return await service.list_rules(ctx, store_id=store_id, include_retired=include_retired, trigger=trigger)


@router.post("", status_code=201, response_model=RuleRead, dependencies=[can_write],
             responses=problem_responses(403, 404, 409))
async def create_rule(ctx: CtxDep, body: RuleCreate, idempotency_key: IdempotencyKey = None) -> Response:
    """Add a rule: a new key to the group's playbook (CS director, admin), or with `store_id` a store's override of
    a group rule (a manager of that store; same trigger as the group rule). 409 when the key is already in force
    in that scope. Validated against the rest of the playbook: a chained rule follows an existing rule and no
    chain loops back; offsets in order; cadences repeat; at most 240 occurrences per subject.
    Honours `Idempotency-Key`."""

    async def created() -> tuple[dict[str, Any], dict[str, str]]:
        rule = await service.create_rule(ctx, body)
        return (RuleRead.model_validate(rule).model_dump(mode="json"),
                {"ETag": etag_for(rule.version), "Location": _location(rule)})

    return await ctx.runtime.idempotency.run(ctx.principal, idempotency_key, "POST /playbook/rules",
                                             body.model_dump(mode="json"), created)


@router.get("/{key}", response_model=RuleRead, dependencies=[can_read], responses=problem_responses(404))
async def get_rule(ctx: CtxDep, key: RuleKey, response: Response, store_id: StoreQuery = None) -> Rule:
    """The active version of a rule (ETag = its version): the group's, or with `store_id` the one in force in that
    store (its override when it has one; `scope` tells which)."""
    return tagged(response, await service.get_rule(ctx, key, store_id))


@router.get("/{key}/versions", response_model=list[RuleRead], dependencies=[can_read],
            responses=problem_responses(404))
async def rule_versions(ctx: CtxDep, key: RuleKey, store_id: StoreQuery = None) -> list[Rule]:
    """Every version of the group rule, or with `store_id` of that store's override, newest first."""
    return await service.versions(ctx, key, store_id)


@router.put("/{key}", response_model=RuleChangeResult, dependencies=[can_write],
            responses=problem_responses(403, 404, 412, 428))
async def update_rule(ctx: CtxDep, key: RuleKey, body: RuleUpdate, response: Response, store_id: StoreQuery = None,
                      if_match: IfMatch = None) -> RuleChangeResult:
    """Change a rule: the active version (the group's, or with `store_id` that store's override) is retired and
    the next one added. Requires `If-Match` (so a repeat answers 412 and never applies twice). `pending` says what
    becomes of the occurrences the old version planned that have not fired: `keep` (they fire as planned by the
    old version), `reschedule` (new due times from the new schedule; steps it lacks, or all of them when the new
    version is disabled, are cancelled; refused when the trigger changes) or `cancel` (reason recorded). History
    (fired, skipped, cancelled, failed) never changes."""
    rule, counts = await service.update_rule(ctx, key, store_id, body, if_match)
    return _changed(rule, counts, response)


@router.delete("/{key}", response_model=RuleChangeResult, dependencies=[can_write],
               responses=problem_responses(403, 404, 412, 428))
async def delete_override(ctx: CtxDep, key: RuleKey, response: Response, store_id: StoreQuery = None,
                          if_match: IfMatch = None,
                          pending: Annotated[service.Pending, Query(
                              description="What the override planned: keep it, move it to the group rule's "
                                          "schedule, or cancel it.")] = "keep") -> RuleChangeResult:
    """Remove a store's override (`store_id` required; requires `If-Match`): it is retired and the group rule
    applies in that store again. Group rules are not deleted (422): disable them with PUT `enabled=false`.
    Answers the retired version with what became of its pending occurrences."""
    rule, counts = await service.retire_override(ctx, key, store_id, if_match, pending)
    return _changed(rule, counts, response)
