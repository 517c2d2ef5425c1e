"""Records in, by external id: create what is new, change what differs, leave the rest alone, refuse row by row.

One code path for bulk files (a batch of ~1,000 records per transaction) and REST upserts (a batch of one). Each
batch is decided in memory first (with one query per table for what exists), so a refused record writes nothing,
then written set-wise: ``COPY`` for new rows, the ORM for the few updated ones, the audit entries and the events
(imported customers flagged as history, so follow-up plans from when the relationship began) in the same
transaction. Sending the same records again finds nothing to change and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from customer_svc.customers.service import generated_customer_no, identity_keys, snapshot_event
from customer_svc.imports.records import CustomerRecord, DeliveryRecord, RowResult, VehicleFields, VisitRecord
from customer_svc.imports.scope import IntakeScope, Reject, StoreRef
from customer_svc.models import (AuditEntry, Customer, CustomerPhone, MileageReading, ServiceVisit, Vehicle,
                                 VehicleOwnership)
from customer_svc.vehicles.service import EVENT_FIELDS
from shared.db.base import advisory_locks, in_values, utcnow
from shared.db.bulk import EncodedRows, encode_rows, with_defaults, write_rows
from shared.events.catalog.customer import (CustomerCreated, CustomerUpdated, ServiceVisitCompleted,
                                            VehicleDelivered, VehicleRegistered, VehicleUpdated)
from shared.events.envelope import EventData
from shared.ids import new_id
from shared.messaging.outbox import Outbox, PreparedEvent
from shared.observability.context import request_id_var
from shared.pacing import paced

#: Customer fields a record may set (absent ones are left as they are).
CUSTOMER_FIELDS = ("name", "kind", "gender", "birthday", "id_number", "address", "wechat_openid", "customer_no")
VEHICLE_FIELDS = tuple(n for n in VehicleFields.model_fields if n not in ("delivery_date", "mileage_km"))
#: Phone and ID numbers given to customers in a batch: (store code, phone number or "id:" + ID number) -> the
#: customer's external id.
Claims = dict[tuple[str, str], str]
#: How far ahead of our clock a DMS settlement time may be (reception PCs drift).
CLOCK_SKEW = timedelta(minutes=5)


def batch_keys(kind: str, record: Any) -> set[str]:
    """What one batch may hold once only: a record sharing a key with an earlier one starts a new batch, so the
    later record sees the earlier one's result (a file may list a customer twice)."""
    if kind == "customers":
        return {f"c:{record.external_id}", *([f"v:{record.vin}"] if record.vin else []), f"p:{record.phone}"}
    if kind == "deliveries":
        return {f"v:{record.vin}"}
    return {f"r:{record.external_id}"}


def identity_locks(records: Iterable[tuple[CustomerRecord, StoreRef]]) -> list[str]:
    """The identity locks (see :func:`identity_keys`) of customer records in their stores: what a REST upsert takes
    exclusively and a bulk batch shared."""
    return sorted({key for r, store in records for key in identity_keys(store.id, (r.phone, r.phone2, r.id_number))})


@dataclass
class _Writes:
    """New rows per table, events and audit entries of one batch, written at the end in FK order."""

    rows: dict[sa.Table, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[EventData | PreparedEvent, uuid.UUID, uuid.UUID]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    #: All of the above encoded for the database, in the order they are written (``Intake.prepare``).
    encoded: list[EncodedRows | None] | None = None

    def add(self, table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.setdefault(table, []).append(with_defaults(table, row))
        return row


_ORDER = [t.__table__ for t in (Customer, CustomerPhone, Vehicle, VehicleOwnership, MileageReading, ServiceVisit)]


def _since(day: date | None, store: StoreRef) -> datetime | None:
    return datetime.combine(day, time(12), tzinfo=store.tz).astimezone(UTC) if day else None


class Intake:
    """Applies batches of records for one caller (``scope``) in the caller's transaction."""

    def __init__(self, session: AsyncSession, scope: IntakeScope, outbox: Outbox, *, audit_creates: bool = True,
                 claims: Claims | None = None, earlier_claims: list[Claims] | None = None,
                 lock_identities: bool = False) -> None:
        """``audit_creates=False`` (bulk jobs): records a file creates are audited by the job's own entry and its
        per-row report (who, when, which record); changes to records on file are always audited with before/after.

        ``claims``: the phone numbers this batch gives to customers, by store code, with the customer's external id;
        ``earlier_claims``: those of batches before it that may not have committed when it looked up (it cannot see
        their rows, and must still refuse their numbers to another customer).

        ``lock_identities`` (single records, as the REST upserts send them): take the advisory locks staff creates
        take on a store's phone numbers and ID numbers, so two writers cannot give one number to two customers at
        once. Bulk batches do not (a thousand locks per transaction would strain Postgres's lock table, and
        pipelined batches would wait on each other's): within a job the claims keep numbers apart."""
        self.audit_creates = audit_creates
        self.lock_identities = lock_identities
        self.claims: Claims = {} if claims is None else claims
        self.earlier_claims = earlier_claims or []
        self.session = session
        self.scope = scope
        self.outbox = outbox
        self.tenant_id = scope.principal.tenant_id
        self.now = utcnow()

    # --- entry point ---------------------------------------------------------------------------------------

    async def apply(self, kind: str, items: list[tuple[int, Any]]) -> list[RowResult]:
        results, writes = await self.decide(kind, items)
        await self.write(writes)
        return results

    async def decide(self, kind: str, items: list[tuple[int, Any]]) -> tuple[list[RowResult], _Writes]:
        """Look up what exists (locking it), decide every record, build the new rows and events; writes nothing
        but the ORM changes to locked rows, which :meth:`write` flushes."""
        self.now = utcnow()
        writes = _Writes()
        handler = {"customers": self._customers, "deliveries": self._deliveries, "visits": self._visits}[kind]
        return await handler(items, writes), writes

    async def prepare(self, writes: _Writes) -> None:
        """Encode the new rows, audit entries and events (CPU only: a pipelined batch does it while waiting for
        the batch before it to commit, a table at a time)."""
        dialect = self.session.bind.dialect
        tables = [*((t, writes.rows.get(t, [])) for t in _ORDER), (AuditEntry.__table__, writes.audit)]
        writes.encoded = [encode_rows(dialect, table, rows) async for table, rows in paced(tables, every=1)]
        writes.encoded.append(encode_rows(dialect, self.outbox.model.__table__, self.outbox.rows(writes.events)))

    async def write(self, writes: _Writes) -> None:
        await self.session.flush()  # ORM updates first: new rows may point at updated ones
        if writes.encoded is None:
            await self.prepare(writes)
        for rows in writes.encoded or ():
            await write_rows(self.session, rows)
        if writes.events:
            self.outbox.hint_relay(self.session)

    # --- shared pieces -------------------------------------------------------------------------------------

    def _claimed_by(self, store: StoreRef, number: str) -> str | None:
        key = (store.code, number)
        if key in self.claims:
            return self.claims[key]
        for claims in self.earlier_claims:
            if key in claims:
                return claims[key]
        return None

    def _audit(self, w: _Writes, action: str, record_type: str, record_id: uuid.UUID, store_id: uuid.UUID,
               before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        if action == "create" and not self.audit_creates:
            return
        p = self.scope.principal
        w.audit.append(with_defaults(AuditEntry.__table__, {
            "id": new_id(), "tenant_id": self.tenant_id, "store_id": store_id, "actor_id": p.subject,
            "actor_kind": p.kind, "action": action, "record_type": record_type, "record_id": record_id,
            "before": before, "after": after, "request_id": request_id_var.get(), "at": self.now}))

    def _event(self, w: _Writes, data: EventData | PreparedEvent, store_id: uuid.UUID) -> None:
        """Payloads of the hot path (created, registered, delivered) are built as dicts (``PreparedEvent``): their
        values come from validated records and typed columns, and a pydantic model each cost a third of the CPU."""
        w.events.append((data, self.tenant_id, store_id))

    async def _vehicles_by_vin(self, vins: set[str]) -> dict[str, Vehicle]:
        if not vins:
            return {}
        rows = await self.session.scalars(sa.select(Vehicle).where(
            Vehicle.tenant_id == self.tenant_id, in_values(self.session, Vehicle.vin, vins)).with_for_update())
        return {v.vin: v for v in rows}

    def _change_vehicle(self, w: _Writes, v: Vehicle, changes: dict[str, Any], source: str) -> None:
        if not changes:
            return
        before = {k: getattr(v, k) for k in changes}
        if "mileage_km" in changes:
            w.add(MileageReading.__table__, {"id": new_id(), "vehicle_id": v.id, "km": changes["mileage_km"],
                                             "read_at": self.now, "source": source})
        for k, value in changes.items():
            setattr(v, k, value)
        v.version += 1
        v.updated_at = self.now
        self._audit(w, "update", "vehicle", v.id, v.store_id, before, changes)
        self._event(w, VehicleUpdated(**_vehicle_event(v), changed=sorted(changes), mileage_km=v.mileage_km),
                    v.store_id)

    def _deliver(self, w: _Writes, v: Vehicle | dict[str, Any], owner: Customer | dict[str, Any] | None,
                 day: date, consultant: uuid.UUID | None) -> None:
        get = v.get if isinstance(v, dict) else lambda k: getattr(v, k)  # type: ignore[union-attr]
        self._event(w, PreparedEvent.of(VehicleDelivered, {
            "vehicle_id": get("id"), "customer_id": get("customer_id"), "delivery_date": day,
            "selling_consultant_id": consultant or get("selling_consultant_id")}), get("store_id"))
        if isinstance(owner, Customer) and owner.relationship_type == "prospect":
            self._change_customer(w, owner, {"relationship_type": "owner"})

    def _change_customer(self, w: _Writes, c: Customer, changes: dict[str, Any],
                         phones: list[str] | None = None) -> None:
        before = {k: getattr(c, k) for k in changes}
        for k, value in changes.items():
            setattr(c, k, value)
        if "birthday" in changes:
            c.birthday_md = c.birthday.month * 100 + c.birthday.day if c.birthday else None
        changed = sorted(changes)
        if phones:
            before["phones"] = [p.e164 for p in c.phones]
            known = {p.e164 for p in c.phones}
            for p in c.phones:
                p.is_primary = p.e164 == phones[0]
            for i, number in enumerate(n for n in phones if n not in known):
                c.phones.append(CustomerPhone(e164=number, tenant_id=c.tenant_id, store_id=c.store_id,
                                              is_primary=number == phones[0], position=len(known) + i))
            changed.append("phones")
        c.version += 1
        c.updated_at = self.now
        after = {k: getattr(c, k) for k in changes} | ({"phones": [p.e164 for p in c.phones]} if phones else {})
        self._audit(w, "update", "customer", c.id, c.store_id, before, after)
        self._event(w, CustomerUpdated(**snapshot_event(c), changed=changed), c.store_id)

    # --- customers (with their vehicle and its delivery) ---------------------------------------------------

    async def _customers(self, items: list[tuple[int, CustomerRecord]], w: _Writes) -> list[RowResult]:
        results: list[RowResult] = []
        located: list[tuple[int, CustomerRecord, StoreRef]] = []
        for row, rec in items:
            try:
                located.append((row, rec, self.scope.store_of(rec)))
            except Reject as r:
                results.append(_rejected(row, rec.external_id, r))
        if not located:
            return results
        if self.lock_identities:
            await advisory_locks(self.session, identity_locks((r, s) for _, r, s in located))
        await self.scope.resolve_staff(self.session, {r.sales_consultant_no for _, r, _ in located
                                                      if r.sales_consultant_no})
        t = self.tenant_id
        keys = {r.external_id for _, r, _ in located}
        existing = {c.external_id: c for c in await self.session.scalars(sa.select(Customer).where(
            Customer.tenant_id == t, in_values(self.session, Customer.external_id, keys)).with_for_update(of=Customer))}
        # Staff merged the record on file into another: the source system's id now means the surviving customer
        # (merge chains are kept flat), so its records keep applying instead of being refused from then on.
        merged = {c.merged_into_id for c in existing.values() if c.merged_into_id is not None}
        # The ids that reach their customer only through a merge (the survivor has an id of its own, or none).
        through_merge: set[str] = set()
        if merged:
            survivors = {c.id: c for c in await self.session.scalars(sa.select(Customer).where(
                Customer.id.in_(merged), Customer.merged_into_id.is_(None)).with_for_update(of=Customer))}
            through_merge = {ext for ext, c in existing.items() if c.merged_into_id in survivors}
            existing = {ext: survivors.get(c.merged_into_id, c) if c.merged_into_id else c  # type: ignore[arg-type]
                        for ext, c in existing.items()}
        numbers = {n for _, r, _ in located for n in (r.phone, r.phone2) if n}
        phone_owner = await self._phone_owners(numbers)
        # A new external id whose phone is a customer staff recorded by hand (no external id yet): the same person.
        # Or one with this very external id, which another writer gave it after the lookup above (the same record
        # sent twice at once): the customer on file.
        candidates = {r.external_id: phone_owner[(s.id, r.phone)][0] for _, r, s in located
                      if r.external_id not in existing and (s.id, r.phone) in phone_owner
                      and phone_owner[(s.id, r.phone)][1] in (None, r.external_id)}
        # Locked now: one another writer adopted meanwhile has an external id, this record's or another customer's.
        locked = list(await self.session.scalars(sa.select(Customer).where(
            Customer.id.in_(set(candidates.values()))).with_for_update(of=Customer))) if candidates else []
        adopted = {c.id: c for c in locked if c.external_id is None}
        existing.update({c.external_id: c for c in locked if c.external_id in keys})
        adopt = {ext: cid for ext, cid in candidates.items() if cid in adopted}
        numbers_taken = {r.customer_no for _, r, _ in located if r.customer_no}
        used_numbers = dict((await self.session.execute(sa.select(Customer.customer_no, Customer.id).where(
            Customer.tenant_id == t, in_values(self.session, Customer.customer_no, numbers_taken)))).all()) \
            if numbers_taken else {}
        vehicles = await self._vehicles_by_vin({r.vin for _, r, _ in located if r.vin})
        id_owner = await self._id_number_owners({r.id_number for _, r, _ in located if r.id_number})
        numbers_of: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {}  # of the customers up for adoption
        for number, (owner, _) in phone_owner.items():
            if owner in adopted:
                numbers_of.setdefault(owner, []).append(number)
        async for row, rec, store in paced(located):
            # A hand-entered customer two records' numbers point to is taken over by the first one accepted; for
            # the later ones it is then that record's customer, as if they came in a later batch.
            adopting = adopt.get(rec.external_id) in adopted
            customer = existing.get(rec.external_id) or (adopted[adopt[rec.external_id]] if adopting else None)
            try:
                # Only a new or changed number is checked (as staff edits are): one a customer already holds
                # stays theirs, even where older data gave it to two.
                if rec.id_number and (customer is None or customer.id_number != rec.id_number) and any(
                        owner is not customer for owner in id_owner.get((store.id, rec.id_number), ())):
                    raise Reject("id_number", "belongs to another customer of this store")
                results.append(self._customer_row(w, row, rec, store, customer, adopting, phone_owner, used_numbers,
                                                  vehicles, rec.external_id in through_merge))
            except Reject as r:
                results.append(_rejected(row, rec.external_id, r))
                continue
            if adopting:
                taken = adopt[rec.external_id]
                del adopted[taken]
                for number in numbers_of.get(taken, ()):
                    phone_owner[number] = (taken, rec.external_id)
        return results

    async def _id_number_owners(self, id_numbers: set[str]) -> dict[tuple[uuid.UUID, str], list[Customer]]:
        """(store, ID number) -> the customers on file with it (not merged away): within a store it is one person's,
        but records from before the rule may hold it twice."""
        owners: dict[tuple[uuid.UUID, str], list[Customer]] = {}
        if id_numbers:
            for c in await self.session.scalars(sa.select(Customer).where(
                    Customer.tenant_id == self.tenant_id, in_values(self.session, Customer.id_number, id_numbers),
                    Customer.merged_into_id.is_(None))):
                owners.setdefault((c.store_id, c.id_number), []).append(c)  # type: ignore[arg-type]
        return owners

    async def _phone_owners(self, numbers: set[str]) -> dict[tuple[uuid.UUID, str], tuple[uuid.UUID, str | None]]:
        """(store, number) -> (customer, external id) for the numbers on file. Two index lookups rather than a join,
        whose plan goes wrong while a big import is still growing the tables faster than statistics follow."""
        phones = (await self.session.execute(sa.select(CustomerPhone.e164, CustomerPhone.store_id,
                                                       CustomerPhone.customer_id).where(
            CustomerPhone.tenant_id == self.tenant_id, in_values(self.session, CustomerPhone.e164, numbers)))).all()
        if not phones:
            return {}
        live = dict((await self.session.execute(sa.select(Customer.id, Customer.external_id).where(
            in_values(self.session, Customer.id, {p.customer_id for p in phones}),
            Customer.merged_into_id.is_(None)))).all())
        return {(p.store_id, p.e164): (p.customer_id, live[p.customer_id]) for p in phones if p.customer_id in live}

    def _customer_row(self, w: _Writes, row: int, rec: CustomerRecord, store: StoreRef, customer: Customer | None,
                      adopting: bool, phone_owner: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, str | None]],
                      used_numbers: dict[str, uuid.UUID], vehicles: dict[str, Vehicle],
                      through_merge: bool = False) -> RowResult:
        """Decide everything about one record (raising :class:`Reject` before any change), then change it.
        ``through_merge``: the record's id reaches ``customer`` only because staff merged its customer into this
        one, whose own record (or staff) has the last word: it only fills what is empty and adds its numbers."""
        p = self.scope.principal
        if rec.vin and p.kind == "integration" and p.scopes and "vehicles:write" not in p.scopes:
            raise Reject("vin", "a vehicle needs the vehicles:write scope of the integration key")
        phones = list(dict.fromkeys(n for n in (rec.phone, rec.phone2) if n))  # the same number twice is once
        cid = customer.id if customer is not None else None
        for i, number in enumerate(phones):
            owner = phone_owner.get((store.id, number))
            name = "phone" if i == 0 else "phone2"
            if owner is not None and owner[0] != cid:
                raise Reject(name, "belongs to another customer of this store"
                             + (f" (external id {owner[1]})" if owner[1] else ""))
            if self._claimed_by(store, number) not in (None, rec.external_id):
                raise Reject(name, "the same number as an earlier record, for another customer")
        if rec.id_number and self._claimed_by(store, "id:" + rec.id_number) not in (None, rec.external_id):
            raise Reject("id_number", "the same ID number as an earlier record, for another customer")
        if rec.customer_no and used_numbers.get(rec.customer_no, cid) != cid:
            raise Reject("customer_no", "already used by another customer")
        if customer is not None:
            if customer.merged_into_id is not None:
                raise Reject("external_id", f"this customer was merged into {customer.merged_into_id}")
            if not self.scope.writable(customer.store_id):
                raise Reject("external_id", "belongs to a customer of a store that is not yours")
            if customer.store_id != store.id:
                raise Reject("store_code", "the customer is on file in another store")
        vehicle = vehicles.get(rec.vin) if rec.vin else None
        # Where the record puts its sales consultant: the customer, and the vehicle it registers or delivers.
        sales = self.scope.staff(rec.sales_consultant_no, "sales_consultant_no", already=(
            customer.assigned_sales_id if customer is not None else None,
            *((vehicle.selling_consultant_id if vehicle is not None else None,)
              if rec.vin and (vehicle is None or rec.delivery_date) else ())))
        v_changes: dict[str, Any] = {}
        deliver = False
        if vehicle is not None:
            if not self.scope.writable(vehicle.store_id):
                raise Reject("vin", "registered in a store that is not yours")
            if vehicle.customer_id != cid:
                raise Reject("vin", "registered to another customer; transfer the vehicle first")
            v_changes = {k: getattr(rec, k) for k in VEHICLE_FIELDS
                         if getattr(rec, k) is not None and getattr(rec, k) != getattr(vehicle, k)}
            # A lower reading than the last (a repair order has read the odometer since the sales system did) is
            # history, as for visits: the record stays repeat-safe instead of being refused whole.
            if rec.mileage_km is not None and (vehicle.mileage_km is None or rec.mileage_km > vehicle.mileage_km):
                v_changes["mileage_km"] = rec.mileage_km
            delivered = rec.delivery_date or vehicle.delivery_date
            if rec.purchase_date is not None and delivered is not None and rec.purchase_date > delivered:
                raise Reject("purchase_date", f"is after the delivery date ({delivered})")
            if rec.delivery_date is not None and rec.delivery_date != vehicle.delivery_date:
                if vehicle.delivery_date is not None:
                    raise Reject("delivery_date", f"the vehicle was delivered on {vehicle.delivery_date}")
                if (rec.purchase_date or vehicle.purchase_date or rec.delivery_date) > rec.delivery_date:
                    raise Reject("delivery_date", "is before the purchase date")
                deliver = True
            if sales is not None and rec.delivery_date and vehicle.selling_consultant_id != sales:
                v_changes["selling_consultant_id"] = sales
        for number in phones:
            self.claims[(store.code, number)] = rec.external_id
        if rec.id_number:
            self.claims[(store.code, "id:" + rec.id_number)] = rec.external_id

        # --- decided: now change ---
        owner_now = rec.relationship == "owner" or rec.delivery_date is not None
        status = "unchanged"
        if customer is None:
            customer_row = self._new_customer(w, rec, store, sales, phones, owner_now)
            cid, status = customer_row["id"], "accepted"
        else:
            changes = {k: getattr(rec, k) for k in CUSTOMER_FIELDS
                       if getattr(rec, k) is not None and getattr(rec, k) != getattr(customer, k)
                       and not (through_merge and getattr(customer, k) is not None)}
            if adopting:
                changes["external_id"] = rec.external_id
            if sales is not None and sales != customer.assigned_sales_id and not (
                    through_merge and customer.assigned_sales_id is not None):
                changes["assigned_sales_id"] = sales
            if owner_now and customer.relationship_type == "prospect" and not deliver:
                changes["relationship_type"] = "owner"
            if through_merge and customer.primary_phone:
                phones = [customer.primary_phone, *(n for n in phones if n != customer.primary_phone)]
            new_phones = phones if phones and (phones[0] != customer.primary_phone or not set(phones) <= {
                p.e164 for p in customer.phones}) else None
            if changes or new_phones:
                self._change_customer(w, customer, changes, new_phones)
                status = "updated"
        vid = vehicle.id if vehicle is not None else None
        if rec.vin and vehicle is None:
            vrow = self._new_vehicle(w, rec, store, cid, sales)  # type: ignore[arg-type]
            vid = vrow["id"]
            if rec.delivery_date:
                self._deliver(w, vrow, customer, rec.delivery_date, sales)
            status = "accepted" if status == "accepted" else "updated"
        elif vehicle is not None:
            if v_changes or deliver:
                status = "accepted" if status == "accepted" else "updated"
            self._change_vehicle(w, vehicle, v_changes | ({"delivery_date": rec.delivery_date} if deliver else {}),
                                 "import")
            if deliver:
                self._deliver(w, vehicle, customer, rec.delivery_date, sales)  # type: ignore[arg-type]
        return RowResult(row=row, status=status, key=rec.external_id, customer_id=cid,  # type: ignore[arg-type]
                         vehicle_id=vid)

    def _new_customer(self, w: _Writes, rec: CustomerRecord, store: StoreRef, sales: uuid.UUID | None,
                      phones: list[str], owner: bool) -> dict[str, Any]:
        cid = new_id()
        row = w.add(Customer.__table__, {
            "id": cid, "tenant_id": self.tenant_id, "store_id": store.id,
            "customer_no": rec.customer_no or generated_customer_no(cid), "external_id": rec.external_id,
            "kind": rec.kind or "person", "name": rec.name, "gender": rec.gender, "birthday": rec.birthday,
            "birthday_md": rec.birthday.month * 100 + rec.birthday.day if rec.birthday else None,
            "id_number": rec.id_number, "address": rec.address, "wechat_openid": rec.wechat_openid,
            "relationship_type": "owner" if owner else (rec.relationship or "prospect"),
            "assigned_sales_id": sales, "family": {}, "hobbies": [], "created_by": self.scope.principal.subject,
            "created_at": self.now, "updated_at": self.now})
        for i, number in enumerate(phones):
            w.add(CustomerPhone.__table__, {"customer_id": cid, "e164": number, "tenant_id": self.tenant_id,
                                            "store_id": store.id, "label": None, "is_primary": i == 0,
                                            "position": i})
        self._audit(w, "create", "customer", cid, store.id, None,
                    {**{k: v for k, v in row.items() if v is not None}, "phones": phones})
        self._event(w, PreparedEvent.of(CustomerCreated, {
            "customer_id": cid, "store_id": store.id, "customer_no": row["customer_no"], "kind": row["kind"],
            "name": rec.name, "primary_phone": phones[0], "wechat_openid": rec.wechat_openid,
            "birthday": rec.birthday, "birthday_calendar": "solar", "wedding_anniversary": None,
            "gender": rec.gender, "relationship": row["relationship_type"], "intent_level": None,
            "value_class": None, "preferred_channel": None, "do_not_call": False, "assigned_sales_id": sales,
            "assigned_advisor_id": None, "tags": [], "consents": [], "external_id": rec.external_id,
            "imported": True, "since": _since(rec.since, store)}), store.id)
        return row

    def _new_vehicle(self, w: _Writes, rec: CustomerRecord, store: StoreRef, customer_id: uuid.UUID,
                     sales: uuid.UUID | None) -> dict[str, Any]:
        vid = new_id()
        row = w.add(Vehicle.__table__, {
            "id": vid, "tenant_id": self.tenant_id, "store_id": store.id, "customer_id": customer_id, "vin": rec.vin,
            **{k: getattr(rec, k) for k in VEHICLE_FIELDS}, "delivery_date": rec.delivery_date,
            "mileage_km": rec.mileage_km, "selling_consultant_id": sales, "created_at": self.now,
            "updated_at": self.now})
        w.add(VehicleOwnership.__table__, {"id": new_id(), "vehicle_id": vid, "customer_id": customer_id,
                                           "store_id": store.id, "started_at": self.now, "reason": "imported"})
        if rec.mileage_km is not None:
            w.add(MileageReading.__table__, {"id": new_id(), "vehicle_id": vid, "km": rec.mileage_km,
                                             "read_at": self.now, "source": "import"})
        self._audit(w, "create", "vehicle", vid, store.id, None, {k: v for k, v in row.items() if v is not None})
        self._event(w, PreparedEvent.of(VehicleRegistered, _vehicle_event(row)), store.id)
        return row

    # --- deliveries ----------------------------------------------------------------------------------------

    async def _deliveries(self, items: list[tuple[int, DeliveryRecord]], w: _Writes) -> list[RowResult]:
        results: list[RowResult] = []
        await self.scope.resolve_staff(self.session, {r.sales_consultant_no for _, r in items
                                                      if r.sales_consultant_no})
        vehicles = await self._vehicles_by_vin({r.vin for _, r in items})
        owner_ids = {v.customer_id for v in vehicles.values()}
        owners = {c.id: c for c in await self.session.scalars(sa.select(Customer).where(
            in_values(self.session, Customer.id, owner_ids)).with_for_update(of=Customer))} if vehicles else {}
        async for row, rec in paced(items):
            try:
                results.append(self._delivery_row(w, row, rec, vehicles.get(rec.vin), owners))
            except Reject as r:
                results.append(_rejected(row, rec.vin, r))
        return results

    def _delivery_row(self, w: _Writes, row: int, rec: DeliveryRecord, vehicle: Vehicle | None,
                      owners: dict[uuid.UUID, Customer]) -> RowResult:
        if vehicle is None or not self.scope.writable(vehicle.store_id):
            raise Reject("vin", "no vehicle with this VIN in your stores")
        self.scope.check_place(rec, vehicle.store_id)
        sales = self.scope.staff(rec.sales_consultant_no, "sales_consultant_no",
                                 already=(vehicle.selling_consultant_id,))
        done = RowResult(row=row, status="unchanged", key=rec.vin, customer_id=vehicle.customer_id,
                         vehicle_id=vehicle.id)
        if vehicle.delivery_date == rec.delivery_date:
            return done
        if vehicle.delivery_date is not None:
            raise Reject("delivery_date", f"the vehicle was delivered on {vehicle.delivery_date}")
        if vehicle.purchase_date is not None and rec.delivery_date < vehicle.purchase_date:
            raise Reject("delivery_date", "is before the purchase date")
        changes: dict[str, Any] = {"delivery_date": rec.delivery_date}
        if sales is not None and sales != vehicle.selling_consultant_id:
            changes["selling_consultant_id"] = sales
        self._change_vehicle(w, vehicle, changes, "import")
        self._deliver(w, vehicle, owners.get(vehicle.customer_id), rec.delivery_date, sales)
        done.status = "updated"
        return done

    # --- service visits ------------------------------------------------------------------------------------

    async def _visits(self, items: list[tuple[int, VisitRecord]], w: _Writes) -> list[RowResult]:
        results: list[RowResult] = []
        await self.scope.resolve_staff(self.session, {r.advisor_no for _, r in items if r.advisor_no})
        known = {v.external_id: v for v in await self.session.scalars(sa.select(ServiceVisit).where(
            ServiceVisit.tenant_id == self.tenant_id,
            in_values(self.session, ServiceVisit.external_id, {r.external_id for _, r in items})))}
        vehicles = await self._vehicles_by_vin({r.vin for _, r in items})
        async for row, rec in paced(items):
            try:
                results.append(self._visit_row(w, row, rec, known.get(rec.external_id), vehicles.get(rec.vin)))
            except Reject as r:
                results.append(_rejected(row, rec.external_id, r))
        return results

    def _visit_row(self, w: _Writes, row: int, rec: VisitRecord, visit: ServiceVisit | None,
                   vehicle: Vehicle | None) -> RowResult:
        if vehicle is None or not self.scope.writable(vehicle.store_id):
            raise Reject("vin", "no vehicle with this VIN in your stores")
        self.scope.check_place(rec, vehicle.store_id)
        if visit is not None:
            if visit.vehicle_id != vehicle.id:
                raise Reject("external_id", "recorded before for another vehicle")
            # Repair orders are append-only (R-PERM-09): the one on file stands.
            return RowResult(row=row, status="unchanged", key=rec.external_id, customer_id=visit.customer_id,
                             vehicle_id=vehicle.id, visit_id=visit.id)
        advisor = self.scope.staff(rec.advisor_no, "advisor_no")
        store = self.scope.by_id[vehicle.store_id]
        completed = rec.completed_at if rec.completed_at.tzinfo else rec.completed_at.replace(tzinfo=store.tz)
        if completed > self.now + CLOCK_SKEW:
            raise Reject("completed_at", "cannot be in the future")
        if completed < datetime(1990, 1, 1, tzinfo=UTC):
            raise Reject("completed_at", "must be after 1990-01-01")
        vid = new_id()
        visit_row = w.add(ServiceVisit.__table__, {
            "id": vid, "tenant_id": self.tenant_id, "store_id": vehicle.store_id, "customer_id": vehicle.customer_id,
            "vehicle_id": vehicle.id, "external_id": rec.external_id, "visit_type": rec.visit_type,
            "ro_number": rec.ro_number, "mileage_km": rec.mileage_km, "advisor_id": advisor, "items": [],
            "symptoms": rec.symptoms, "completed_at": completed, "created_by": self.scope.principal.subject,
            "created_at": self.now, "updated_at": self.now})
        if rec.mileage_km is not None:
            w.add(MileageReading.__table__, {"id": new_id(), "vehicle_id": vehicle.id, "km": rec.mileage_km,
                                             "read_at": completed, "source": "visit"})
            if vehicle.mileage_km is None or rec.mileage_km > vehicle.mileage_km:
                # An older repair order (history) does not wind the odometer back.
                before = vehicle.mileage_km
                vehicle.mileage_km = rec.mileage_km
                vehicle.version += 1
                self._audit(w, "update", "vehicle", vehicle.id, vehicle.store_id, {"mileage_km": before},
                            {"mileage_km": rec.mileage_km})
                self._event(w, VehicleUpdated(**_vehicle_event(vehicle), changed=["mileage_km"],
                                              mileage_km=vehicle.mileage_km), vehicle.store_id)
        self._audit(w, "create", "visit", vid, vehicle.store_id, None,
                    {k: v for k, v in visit_row.items() if v is not None})
        self._event(w, ServiceVisitCompleted(
            visit_id=vid, vehicle_id=vehicle.id, customer_id=vehicle.customer_id, visit_type=rec.visit_type,
            ro_number=rec.ro_number, mileage_km=rec.mileage_km, advisor_id=advisor, completed_at=completed,
            declined_items=[]), vehicle.store_id)
        return RowResult(row=row, status="accepted", key=rec.external_id, customer_id=vehicle.customer_id,
                         vehicle_id=vehicle.id, visit_id=vid)


def _vehicle_event(v: Vehicle | dict[str, Any]) -> dict[str, Any]:
    get = v.get if isinstance(v, dict) else lambda k: getattr(v, k)  # type: ignore[union-attr]
    return {"vehicle_id": get("id"), "customer_id": get("customer_id"), **{k: get(k) for k in EVENT_FIELDS}}


def _rejected(row: int, key: str | None, r: Reject) -> RowResult:
    return RowResult(row=row, status="rejected", key=key, field=r.field, reason=r.reason)
