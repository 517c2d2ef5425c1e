"""Customer use cases. Each write is one transaction: the change, its audit entry and its event."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from customer_svc.customers import repository as repo
from customer_svc.customers.schemas import ConsentIn, CustomerCreate, CustomerUpdate, LostRequest, PhoneIn
from customer_svc.deps import Ctx
from customer_svc.staff.service import require_active_staff
from customer_svc.models import Consent, Customer, CustomerPhone, CustomerTag, Store
from shared.audit import snapshot
from shared.auth import Principal, Role, ensure_store
from shared.auth.roles import STAFF
from shared.db.base import advisory_locks, utcnow
from shared.errors import BusinessRuleViolation, Duplicate, Forbidden, InvalidField, NotFound, reject_nulls
from shared.events.catalog.customer import (ConsentState, CustomerConsentChanged, CustomerCreated, CustomerLost,
                                            CustomerUpdated)
from shared.http.etag import check_if_match
from shared.http.pagination import PageParams
from shared.ids import new_id
from shared.runtime import ServiceRuntime

WRITERS = STAFF


def full_snapshot(c: Customer) -> dict[str, Any]:
    """The customer as audited and compared for a change: which number is the primary one and each number's label
    count (a new primary is where messages go: it is a change, versioned and published)."""
    return {**snapshot(c), "phones": [p.e164 for p in c.phones], "primary_phone": c.primary_phone,
            "phone_labels": [p.label for p in c.phones], "tags": c.tags,
            "consents": {f"{x.channel}.{x.purpose}": x.granted for x in c.consents}}


def snapshot_event(c: Customer) -> dict[str, Any]:
    return dict(
        customer_id=c.id, store_id=c.store_id, customer_no=c.customer_no, kind=c.kind, name=c.name,
        primary_phone=c.primary_phone, wechat_openid=c.wechat_openid, birthday=c.birthday,
        birthday_calendar=c.birthday_calendar, wedding_anniversary=c.wedding_anniversary,
        gender=c.gender, relationship=c.relationship_type,
        intent_level=c.intent_level, value_class=c.value_class, preferred_channel=c.preferred_channel,
        do_not_call=c.do_not_call, assigned_sales_id=c.assigned_sales_id, assigned_advisor_id=c.assigned_advisor_id,
        tags=c.tags, consents=[ConsentState(channel=x.channel, purpose=x.purpose, granted=x.granted) for x in c.consents],
        external_id=c.external_id,
    )


def generated_customer_no(customer_id: uuid.UUID) -> str:
    """The customer number given when the caller has none: the whole id, since a UUIDv7's leading part repeats
    between ids made in the same millisecond."""
    return "C" + customer_id.hex.upper()


def _birthday_md(c: Customer) -> int | None:
    return c.birthday.month * 100 + c.birthday.day if c.birthday else None


def _phones(customer: Customer, phones: list[PhoneIn]) -> list[CustomerPhone]:
    primary = next((p.number for p in phones if p.primary), phones[0].number)
    return [CustomerPhone(e164=p.number, tenant_id=customer.tenant_id, store_id=customer.store_id, label=p.label,
                          is_primary=p.number == primary, position=i) for i, p in enumerate(phones)]


def _set_consent(ctx: Ctx, customer: Customer, data: ConsentIn) -> bool:
    return set_consent_on(ctx.session, ctx.outbox, customer, data, ctx.principal.subject)


def set_consent_on(session: Any, outbox: Any, customer: Customer, data: ConsentIn,
                   recorded_by: uuid.UUID | None) -> bool:
    """Upsert one consent; True if it changed (and then an event is appended). ``recorded_by`` is None when the
    customer changed it themselves (an SMS opt-out reply relayed by notify_svc)."""
    event = _consent_changed(customer, data, recorded_by)
    if event is not None:
        outbox.append(session, event, tenant_id=customer.tenant_id, store_id=customer.store_id)
    return event is not None


def _consent_changed(customer: Customer, data: ConsentIn, recorded_by: uuid.UUID | None
                     ) -> CustomerConsentChanged | None:
    """Upsert one consent on ``customer``; the event announcing it, None if nothing changed."""
    current = next((x for x in customer.consents if x.channel == data.channel and x.purpose == data.purpose), None)
    if current is not None and current.granted == data.granted:
        return None
    now = utcnow()
    if current is None:
        customer.consents.append(Consent(channel=data.channel, purpose=data.purpose, granted=data.granted,
                                         source=data.source, recorded_at=now, recorded_by=recorded_by))
    else:
        current.granted, current.source, current.recorded_at = data.granted, data.source, now
        current.recorded_by = recorded_by
    return CustomerConsentChanged(customer_id=customer.id, channel=data.channel, purpose=data.purpose,
                                  granted=data.granted, source=data.source, recorded_at=now)


#: A store's phone and ID numbers fall into this many lock buckets: a bulk import batch locks the buckets of its
#: thousand numbers (at most this many locks per store, not a thousand), a staff create the one or two of its own.
IDENTITY_BUCKETS = 64


def identity_keys(store_id: uuid.UUID, numbers: Iterable[str | None]) -> list[str]:
    """The advisory-lock keys of a store's phone and ID numbers (their buckets). Every writer holds them from its
    uniqueness check to its commit, taken before it locks a customer row (so no two writers wait on each other in a
    cycle): staff creates and updates and integration upserts exclusively, bulk batches shared (a job's pipelined
    batches hold them together, and exclude the others)."""
    return sorted({f"customer:{store_id}:{zlib.crc32(n.encode()) % IDENTITY_BUCKETS}" for n in numbers if n})


async def _check_unique(ctx: Ctx, store_id: uuid.UUID, phones: list[str], id_number: str | None,
                        exclude: uuid.UUID | None = None) -> None:
    """Within one store a phone or ID number identifies one customer (409 with the existing id).

    Across the stores of a group the same person may have a relationship with each store; those
    show up in ``GET /customers/{id}/duplicates`` instead of blocking the store.
    """
    # Serialise concurrent creates of the same person in one store (no unique index can say "per store, among
    # records not merged away"): the check below then sees the other transaction's row.
    await advisory_locks(ctx.session, identity_keys(store_id, [*phones, id_number]))
    same = await repo.find_by_phones(ctx.session, ctx.principal.tenant_id, phones, store_id=store_id, exclude=exclude)
    if same:
        raise Duplicate("A customer with this phone number already exists in this store.", existing_id=same[0].id)
    if id_number:
        same = await repo.find_by_id_number(ctx.session, ctx.principal.tenant_id, id_number, store_id, exclude)
        if same:
            raise Duplicate("A customer with this ID number already exists in this store.", existing_id=same[0].id)


async def _lock_identities(ctx: Ctx, customer_id: uuid.UUID, data: CustomerUpdate) -> None:
    """The identity locks an update's uniqueness check needs, taken before the row lock (see :func:`identity_keys`):
    the numbers it will hold, read without locking (the check after the row lock takes any that changed since)."""
    row = (await ctx.session.execute(repo.visible(ctx.principal).with_only_columns(
        Customer.store_id, Customer.id_number).where(Customer.id == customer_id))).first()
    if row is None:
        return
    phones = [p.number for p in data.phones] if data.phones is not None else list(await ctx.session.scalars(
        sa.select(CustomerPhone.e164).where(CustomerPhone.customer_id == customer_id)))
    id_number = data.id_number if "id_number" in data.model_fields_set else row.id_number
    await advisory_locks(ctx.session, identity_keys(row.store_id, [*phones, id_number]))


async def _check_staff(ctx: Ctx, fields: dict[str, Any]) -> None:
    for field in ("assigned_sales_id", "assigned_advisor_id"):
        if fields.get(field) is not None:
            await require_active_staff(ctx, fields[field], f"body.{field}")


def _no_longer_lost(customer: Customer) -> None:
    """A customer back from lost (战败) keeps no lost reason; follow-ups see the new relationship and resume."""
    if customer.relationship_type != "lost":
        customer.lost_reason = customer.lost_kind = customer.lost_at = None


def become_owner(ctx: Ctx, customer: Customer) -> None:
    """A prospect whose car is handed over becomes an owner (保有客户): audited and announced like any change. So
    does a lost one (战败) who bought here after all: no longer lost.

    The caller holds the customer's row lock."""
    if customer.relationship_type not in ("prospect", "lost"):
        return
    before = full_snapshot(customer)
    customer.relationship_type = "owner"
    _no_longer_lost(customer)
    customer.version += 1
    customer.updated_at = utcnow()
    ctx.audit.record(ctx.session, ctx.principal, "update", "customer", customer.id, tenant_id=customer.tenant_id,
                     store_id=customer.store_id, before=before, after=full_snapshot(customer))
    ctx.outbox.append(ctx.session, CustomerUpdated(**snapshot_event(customer), changed=["relationship_type"]),
                      tenant_id=customer.tenant_id, store_id=customer.store_id)


async def get_customer(ctx: Ctx, customer_id: uuid.UUID) -> Customer:
    customer = await repo.get_visible(ctx.session, ctx.principal, customer_id)
    if customer is None:
        raise NotFound("Customer not found.")
    return customer


async def read_customer(runtime: ServiceRuntime, principal: Principal, customer_id: uuid.UUID) -> Any:
    """For rendering only (``GET``): one prepared statement on Postgres; the ORM path on SQLite (embedded)."""
    if runtime.reader is not None:
        customer = await repo.read_visible(runtime.reader, principal, customer_id)
    else:
        async with runtime.sessionmaker() as session:
            customer = await repo.get_visible(session, principal, customer_id)
    if customer is None:
        raise NotFound("Customer not found.")
    return customer


async def create_customer(ctx: Ctx, data: CustomerCreate) -> Customer:
    ensure_store(ctx.principal, data.store_id)
    async with ctx.session.begin():
        store = await ctx.session.get(Store, data.store_id)
        if store is None or store.tenant_id != ctx.principal.tenant_id:
            raise NotFound("Store not found.")
        fields = data.model_dump(exclude={"phones", "consents", "tags", "store_id", "customer_no"}, exclude_none=True)
        await _check_staff(ctx, fields)
        await _check_unique(ctx, data.store_id, [p.number for p in data.phones], data.id_number)
        customer_id = new_id()
        customer_no = data.customer_no or generated_customer_no(customer_id)
        if data.customer_no and await ctx.session.scalar(sa.select(Customer.id).where(
                Customer.tenant_id == ctx.principal.tenant_id, Customer.customer_no == customer_no)):
            raise InvalidField("body.customer_no", "already used by another customer")
        customer = Customer(id=customer_id, tenant_id=ctx.principal.tenant_id, store_id=data.store_id,
                            customer_no=customer_no, created_by=ctx.principal.subject, consents=[], tag_rows=[],
                            **{"family": {}, "hobbies": [], **fields})
        customer.birthday_md = _birthday_md(customer)
        customer.phones = _phones(customer, data.phones)
        customer.tag_rows = [CustomerTag(tag=t, tenant_id=customer.tenant_id) for t in data.tags or []]
        ctx.session.add(customer)
        consents = [e for c in data.consents if (e := _consent_changed(customer, c, ctx.principal.subject))]
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "create", "customer", customer.id, tenant_id=customer.tenant_id,
                         store_id=customer.store_id, after=full_snapshot(customer))
        # The customer first, then its consents (each with when and how it was given): a consumer meeting a
        # consent first would have to wait for the customer.
        ctx.outbox.append(ctx.session, CustomerCreated(**snapshot_event(customer)),
                          tenant_id=customer.tenant_id, store_id=customer.store_id)
        for event in consents:
            ctx.outbox.append(ctx.session, event, tenant_id=customer.tenant_id, store_id=customer.store_id)
    return customer


async def update_customer(ctx: Ctx, customer_id: uuid.UUID, data: CustomerUpdate, if_match: str | None) -> Customer:
    async with ctx.session.begin():
        if data.phones is not None or "id_number" in data.model_fields_set:
            await _lock_identities(ctx, customer_id, data)
        customer = await repo.get_visible(ctx.session, ctx.principal, customer_id, for_update=True)
        if customer is None:
            raise NotFound("Customer not found.")
        check_if_match(if_match, customer.version)
        changes = data.model_dump(exclude_unset=True, exclude={"phones", "tags"})
        reject_nulls(changes, ("name", "birthday_calendar", "relationship_type", "do_not_call", "vip"))
        await _check_staff(ctx, changes)
        if data.phones is not None or "id_number" in changes:
            phones = [p.number for p in data.phones] if data.phones is not None else [p.e164 for p in customer.phones]
            await _check_unique(ctx, customer.store_id, phones, changes.get("id_number", customer.id_number),
                                exclude=customer.id)
        before = full_snapshot(customer)
        for key, value in changes.items():
            if key in ("family", "hobbies") and value is None:
                value = {} if key == "family" else []
            setattr(customer, key, value)
        if "relationship_type" in changes:  # a lost customer back as a prospect or owner is not lost any more
            _no_longer_lost(customer)
        if data.phones is not None:
            customer.phones = _phones(customer, data.phones)
        if data.tags is not None:
            customer.tag_rows = [CustomerTag(tag=t, tenant_id=customer.tenant_id) for t in data.tags]
        customer.birthday_md = _birthday_md(customer)
        after = full_snapshot(customer)
        changed = sorted(k for k in after if before.get(k) != after.get(k) and k not in ("updated_at", "version"))
        if changed:
            customer.version += 1
            customer.updated_at = utcnow()
            await ctx.session.flush()
            ctx.audit.record(ctx.session, ctx.principal, "update", "customer", customer.id,
                             tenant_id=customer.tenant_id, store_id=customer.store_id, before=before,
                             after=full_snapshot(customer))
            ctx.outbox.append(ctx.session, CustomerUpdated(**snapshot_event(customer), changed=changed),
                              tenant_id=customer.tenant_id, store_id=customer.store_id)
    return customer


async def set_consent(ctx: Ctx, customer_id: uuid.UUID, data: ConsentIn) -> Customer:
    async with ctx.session.begin():
        customer = await repo.get_visible(ctx.session, ctx.principal, customer_id, for_update=True)
        if customer is None:
            raise NotFound("Customer not found.")
        before = full_snapshot(customer)
        if _set_consent(ctx, customer, data):
            customer.version += 1
            await ctx.session.flush()
            ctx.audit.record(ctx.session, ctx.principal, "consent", "customer", customer.id,
                             tenant_id=customer.tenant_id, store_id=customer.store_id, before=before,
                             after=full_snapshot(customer))
    return customer


async def mark_lost(ctx: Ctx, customer_id: uuid.UUID, data: LostRequest) -> Customer:
    """R-PERM-02: only a sales manager confirms a prospect as lost, and a reason is required."""
    if not ctx.principal.has_any(Role.SALES_MANAGER):
        raise Forbidden("Only a sales manager may mark a prospect lost.")
    async with ctx.session.begin():
        customer = await repo.get_visible(ctx.session, ctx.principal, customer_id, for_update=True)
        if customer is None:
            raise NotFound("Customer not found.")
        if customer.relationship_type != "prospect":
            raise BusinessRuleViolation(f"Only prospects can be marked lost; this customer is {customer.relationship_type}.")
        before = full_snapshot(customer)
        customer.relationship_type, customer.lost_reason, customer.lost_kind = "lost", data.reason, data.kind
        customer.lost_at, customer.lost_confirmed_by = utcnow(), ctx.principal.subject
        customer.version += 1
        await ctx.session.flush()
        ctx.audit.record(ctx.session, ctx.principal, "lost", "customer", customer.id, tenant_id=customer.tenant_id,
                         store_id=customer.store_id, before=before, after=full_snapshot(customer))
        ctx.outbox.append(ctx.session, CustomerLost(customer_id=customer.id, reason=data.reason, lost_kind=data.kind,
                                                    confirmed_by=ctx.principal.subject),
                          tenant_id=customer.tenant_id, store_id=customer.store_id)
    return customer


async def timeline(ctx: Ctx, customer_id: uuid.UUID, params: PageParams) -> list:
    """The customer's history from every service, including records merged into this one (an integration key's:
    what its scopes read, of its stores)."""
    customer = await get_customer(ctx, customer_id)
    merged = list((await ctx.session.scalars(sa.select(Customer.id).where(
        Customer.tenant_id == customer.tenant_id, Customer.merged_into_id == customer.id))).all())
    key = ctx.principal if ctx.principal.kind == "integration" else None
    return await repo.timeline(ctx.session, customer.tenant_id, [customer.id, *merged], params, key)
