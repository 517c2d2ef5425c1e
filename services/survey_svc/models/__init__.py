"""survey_svc's tables, all in the ``survey`` schema."""

from shared.audit import audit_model
from shared.db.base import Base_for_schema
from shared.messaging.tables import messaging_models

SCHEMA = "survey"
Base = Base_for_schema(SCHEMA)
messaging = messaging_models(Base)
AuditEntry = audit_model(Base)

from survey_svc.models.readmodel import CustomerView, StaffView, StoreView, VisitView  # noqa: E402
from survey_svc.models.policy import SurveyPolicy  # noqa: E402
from survey_svc.models.survey import Invitation, Response, SurveyTemplate  # noqa: E402
from survey_svc.models.complaint import CaseCounter, Complaint, ComplaintEntry  # noqa: E402

__all__ = ["SCHEMA", "Base", "messaging", "AuditEntry", "CustomerView", "StaffView", "StoreView", "VisitView",
           "SurveyPolicy", "Invitation", "Response", "SurveyTemplate", "CaseCounter", "Complaint", "ComplaintEntry"]
