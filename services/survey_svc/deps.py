"""FastAPI dependencies of survey_svc: its runtime, a session, and the per-request context."""

from __future__ import annotations

from survey_svc.models import AuditEntry
from shared.audit import AuditLog
from shared.http.service_deps import Ctx, IdempotencyKey, IfMatch, ServiceDeps

SERVICE = "survey_svc"
audit_log = AuditLog(AuditEntry)
_deps = ServiceDeps(SERVICE, audit_log)
get_runtime = _deps.get_runtime
RuntimeDep = _deps.RuntimeDep
SessionDep = _deps.SessionDep
CtxDep = _deps.CtxDep

__all__ = ["SERVICE", "Ctx", "CtxDep", "IdempotencyKey", "IfMatch", "RuntimeDep", "SessionDep", "audit_log",
           "get_runtime"]
