"""notify_svc's tables, all in the ``notify`` schema."""

from shared.audit import audit_model
from shared.db.base import Base_for_schema
from shared.messaging.tables import messaging_models

SCHEMA = "notify"
Base = Base_for_schema(SCHEMA)
messaging = messaging_models(Base)
AuditEntry = audit_model(Base)

from notify_svc.models.readmodel import ApiKeyView, CustomerView, StaffView, StoreView  # noqa: E402
from notify_svc.models.template import Template  # noqa: E402
from notify_svc.models.policy import Policy  # noqa: E402
from notify_svc.models.message import BulkJob, Message, MessageEvent  # noqa: E402
from notify_svc.models.provider import RateBucket, WechatQuota, WechatToken  # noqa: E402
from notify_svc.models.webhook import WebhookDelivery, WebhookEndpoint  # noqa: E402

__all__ = ["SCHEMA", "Base", "messaging", "AuditEntry", "ApiKeyView", "CustomerView", "StaffView", "StoreView",
           "Template", "Policy", "BulkJob", "Message", "MessageEvent", "RateBucket", "WechatQuota", "WechatToken",
           "WebhookDelivery", "WebhookEndpoint"]
