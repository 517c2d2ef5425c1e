"""Events published by customer_svc (basic data: stores, staff, customers, vehicles, visits, membership)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import Field

from shared.events.envelope import EventData, event_type


class ConsentState(EventData):
    channel: Literal["sms", "wechat", "phone", "email"]
    purpose: Literal["service", "marketing"]
    granted: bool


class CustomerSnapshot(EventData):
    """What other services keep of a customer in their read models (contact, dates, consent, owners)."""

    customer_id: uuid.UUID
    store_id: uuid.UUID
    customer_no: str
    kind: Literal["person", "company"]
    name: str
    primary_phone: str | None = Field(default=None, description="E.164")
    wechat_openid: str | None = None
    birthday: date | None = None
    birthday_calendar: Literal["solar", "lunar"] = "solar"
    wedding_anniversary: date | None = None
    gender: str | None = None
    relationship: str
    intent_level: str | None = None
    value_class: str | None = None
    preferred_channel: str | None = None
    do_not_call: bool = False
    assigned_sales_id: uuid.UUID | None = None
    assigned_advisor_id: uuid.UUID | None = None
    tags: list[str] = []
    consents: list[ConsentState] = []
    external_id: str | None = Field(default=None, description="The source system's id (OEM / DMS), if any.")


@event_type("customer.customer.created.v1", subject="customer_id")
class CustomerCreated(CustomerSnapshot):
    """A customer (prospect, owner) was created in a store."""

    imported: bool = Field(default=False, description="Came from another system (bulk import or REST upsert): "
                                                      "the relationship is history, not a fresh showroom contact.")
    since: datetime | None = Field(default=None, description="For imported customers, when the relationship "
                                                             "began in the source system, if it said.")


@event_type("customer.customer.updated.v1", subject="customer_id")
class CustomerUpdated(CustomerSnapshot):
    """A customer's data changed; ``changed`` lists the fields, the rest is the new snapshot."""

    changed: list[str] = []


@event_type("customer.customer.merged.v1", subject="customer_id")
class CustomerMerged(EventData):
    """Duplicate ``merged_id`` was folded into ``customer_id``; references to it should move."""

    customer_id: uuid.UUID
    merged_id: uuid.UUID


@event_type("customer.customer.consent_changed.v1", subject="customer_id")
class CustomerConsentChanged(EventData):
    """A consent for one channel and purpose was granted or withdrawn."""

    customer_id: uuid.UUID
    channel: Literal["sms", "wechat", "phone", "email"]
    purpose: Literal["service", "marketing"]
    granted: bool
    source: str
    recorded_at: datetime


@event_type("customer.customer.lost.v1", subject="customer_id")
class CustomerLost(EventData):
    """A sales manager confirmed a prospect as lost (战败/失控) with a reason."""

    customer_id: uuid.UUID
    reason: str
    lost_kind: Literal["defeated", "out_of_control"]
    confirmed_by: uuid.UUID


@event_type("customer.vehicle.registered.v1", subject="vehicle_id")
class VehicleRegistered(EventData):
    """A vehicle was recorded for a customer."""

    vehicle_id: uuid.UUID
    customer_id: uuid.UUID
    vin: str
    plate: str | None = None
    brand: str | None = None
    model: str | None = None
    purchase_date: date | None = None
    delivery_date: date | None = None
    insurance_expiry: date | None = None
    next_inspection_date: date | None = None
    warranty_end: date | None = None
    selling_consultant_id: uuid.UUID | None = None


@event_type("customer.vehicle.updated.v1", subject="vehicle_id")
class VehicleUpdated(VehicleRegistered):
    """A vehicle's data changed (dates that drive reminders, plate, mileage...)."""

    changed: list[str] = []
    mileage_km: int | None = None


@event_type("customer.vehicle.delivered.v1", subject="vehicle_id")
class VehicleDelivered(EventData):
    """The car was handed over (交车): anchors every post-delivery follow-up."""

    vehicle_id: uuid.UUID
    customer_id: uuid.UUID
    delivery_date: date
    selling_consultant_id: uuid.UUID | None = None


@event_type("customer.vehicle.transferred.v1", subject="vehicle_id")
class VehicleTransferred(EventData):
    """Ownership moved to another customer; the history keeps the previous owner."""

    vehicle_id: uuid.UUID
    customer_id: uuid.UUID
    previous_customer_id: uuid.UUID
    reason: str | None = None


@event_type("customer.visit.completed.v1", subject="visit_id")
class ServiceVisitCompleted(EventData):
    """A repair order was settled (maintenance, minor repair, major overhaul, rework)."""

    visit_id: uuid.UUID
    vehicle_id: uuid.UUID
    customer_id: uuid.UUID
    visit_type: Literal["first_maintenance", "maintenance", "minor_repair", "major_overhaul", "rework"]
    ro_number: str | None = None
    mileage_km: int | None = None
    advisor_id: uuid.UUID | None = None
    completed_at: datetime
    declined_items: list[str] = Field(default=[], description="Recommended jobs the customer declined this time: "
                                      "they ride along on the next maintenance reminder.")


@event_type("customer.membership.changed.v1", subject="membership_id")
class MembershipChanged(EventData):
    """A membership was joined, upgraded, renewed, frozen, expired or withdrawn, or its points moved."""

    membership_id: uuid.UUID
    customer_id: uuid.UUID
    card_no: str
    tier: str
    status: Literal["active", "expired", "frozen", "withdrawn"]
    points_balance: int
    change: str


@event_type("customer.store.upserted.v1", subject="store_id")
class StoreUpserted(EventData):
    """A store was created or changed (time zone and business hours drive every local-time rule)."""

    store_id: uuid.UUID
    code: str
    name: str
    timezone: str
    business_hours: dict[str, list[str]]
    active: bool


@event_type("customer.staff.upserted.v1", subject="staff_id")
class StaffUpserted(EventData):
    """A staff member was created or changed (roles, stores, active): owners of follow-up work."""

    staff_id: uuid.UUID
    employee_no: str
    name: str
    phone: str | None = Field(default=None, description="E.164: where staff notices (escalations) go by SMS.")
    department: str | None
    roles: list[str]
    store_ids: list[uuid.UUID]
    active: bool


@event_type("customer.api_key.changed.v1", subject="api_key_id")
class ApiKeyChanged(EventData):
    """An integration key's scopes or stores changed, or it was revoked: what the partner set up elsewhere with it
    (notify_svc's webhook endpoints) follows."""

    api_key_id: uuid.UUID
    scopes: list[str]
    store_ids: list[uuid.UUID]
    revoked: bool = False
