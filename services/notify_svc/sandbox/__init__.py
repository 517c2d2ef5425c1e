"""A local fake of Aliyun SMS, Tencent SMS and the WeChat Official Account API that speaks their real formats,
checks their signatures, applies their per-number limits and can inject faults (``python -m notify_svc.sandbox``).
"""

from notify_svc.sandbox.app import create_sandbox_app
from notify_svc.sandbox.state import FAULT_MODES, SandboxMessage, SandboxState

__all__ = ["FAULT_MODES", "SandboxMessage", "SandboxState", "create_sandbox_app"]
