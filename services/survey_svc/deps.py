"""FastAPI dependencies of survey_svc: its runtime, a session, and the per-request context."""

from __future__ import annotations

from survey_svc.models import AuditEntry
from shared.audit import AuditLog
from shared.auth import require_roles
from shared.auth.roles import MANAGERS
from shared.http.service_deps import Ctx, IdempotencyKey, IfMatch, ServiceDeps

SERVICE = "survey_svc"
audit_log = AuditLog(AuditEntry)
_deps = ServiceDeps(SERVICE, audit_log)
get_runtime = _deps.get_runtime
RuntimeDep = _deps.RuntimeDep
SessionDep = _deps.SessionDep
CtxDep = _deps.CtxDep
#: Managers read their stores' results; an OEM integration key needs the read scope of what it pulls, in reports
#: and exports alike.
survey_readers = require_roles(*MANAGERS, scope="surveys:read")
complaint_readers = require_roles(*MANAGERS, scope="complaints:read")

__all__ = ["SERVICE", "Ctx", "CtxDep", "IdempotencyKey", "IfMatch", "RuntimeDep", "SessionDep", "audit_log",
           "complaint_readers", "get_runtime", "survey_readers"]
