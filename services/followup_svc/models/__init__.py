"""followup_svc's tables, all in the ``followup`` schema."""

from shared.audit import audit_model
from shared.db.base import Base_for_schema
from shared.messaging.tables import messaging_models

SCHEMA = "followup"
Base = Base_for_schema(SCHEMA)
messaging = messaging_models(Base)
AuditEntry = audit_model(Base)

from followup_svc.models.readmodel import CustomerView, StaffView, StoreView, VehicleView  # noqa: E402
from followup_svc.models.playbook import Rule  # noqa: E402
from followup_svc.models.schedule import FollowUp, TestClock  # noqa: E402
from followup_svc.models.task import Task, TaskNote  # noqa: E402
from followup_svc.models.appointment import Appointment  # noqa: E402

__all__ = ["SCHEMA", "Base", "messaging", "AuditEntry", "CustomerView", "StaffView", "StoreView", "VehicleView",
           "Rule", "FollowUp", "TestClock", "Task", "TaskNote", "Appointment"]
