"""customer_svc's tables, all in the ``customer`` schema."""

from shared.audit import audit_model
from shared.db.base import Base_for_schema
from shared.messaging.tables import messaging_models

SCHEMA = "customer"
Base = Base_for_schema(SCHEMA)
messaging = messaging_models(Base)
AuditEntry = audit_model(Base)

from customer_svc.models.org import ApiKey, RefreshToken, Staff, StaffStore, Store, Tenant  # noqa: E402
from customer_svc.models.customer import Consent, Customer, CustomerPhone, CustomerTag  # noqa: E402
from customer_svc.models.vehicle import MileageReading, Vehicle, VehicleOwnership  # noqa: E402
from customer_svc.models.timeline import TimelineEntry  # noqa: E402
from customer_svc.models.visit import ServiceVisit  # noqa: E402
from customer_svc.models.membership import Membership, MembershipTier, PointsEntry  # noqa: E402
from customer_svc.models.imports import ImportChunk, ImportJob, ImportRow  # noqa: E402

__all__ = [
    "SCHEMA", "Base", "messaging", "AuditEntry", "ApiKey", "RefreshToken", "Staff", "StaffStore", "Store", "Tenant",
    "Consent", "Customer", "CustomerPhone", "CustomerTag", "MileageReading", "Vehicle", "VehicleOwnership",
    "TimelineEntry", "ServiceVisit", "Membership", "MembershipTier", "PointsEntry", "ImportChunk", "ImportJob",
    "ImportRow",
]
