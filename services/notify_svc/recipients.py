"""Who a message goes to: the address on each channel, consent, and the person key caps count by.

Addresses come from notify_svc's read model at send time; commands on the bus carry ids, never numbers. A staff
member's WeCom userid is their employee number (the convention of the groups' WeCom directories); customers have
none (WeCom customer contact goes through the member's own client, not app messages).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from notify_svc.models import CustomerView, StaffView
from shared.pii import mask_number

#: Channels whose address is a phone number.
PHONE_CHANNELS = frozenset({"sms", "console"})


@dataclass(frozen=True)
class Recipient:
    kind: str  # customer | staff
    id: uuid.UUID
    name: str
    phone: str | None
    openid: str | None
    consents: dict[str, bool]
    key: str | None  # keyed hash of the person's phone (else openid / WeCom userid): the unit of caps and budgets
    wecom_userid: str | None = None  # staff only: their employee number, which is their WeCom userid

    @classmethod
    def of_customer(cls, customer: CustomerView, secret: bytes) -> Recipient:
        return cls("customer", customer.id, customer.name, customer.phone, customer.wechat_openid,
                   dict(customer.consents or {}),
                   person_key(secret, customer.tenant_id, customer.phone or customer.wechat_openid))

    @classmethod
    def of_staff(cls, staff: StaffView, secret: bytes) -> Recipient:
        # Work notices to staff are part of their job: consent does not apply, caps do (by the same key, which
        # for a member without a phone is their employee number, so WeCom notices are counted too).
        return cls("staff", staff.id, staff.name, staff.phone, None, {},
                   person_key(secret, staff.tenant_id, staff.phone or staff.employee_no), staff.employee_no)

    def address(self, channel: str) -> str | None:
        """Phone (sms, console), openid (wechat, customers only) or WeCom userid (wecom, staff only)."""
        if channel in PHONE_CHANNELS:
            return self.phone
        return self.openid if channel == "wechat" else self.wecom_userid if channel == "wecom" else None

    def consents_to(self, channel: str, purpose: str) -> bool:
        """Service messages are part of the purchase contract (PIPL Art. 13) unless withdrawn; marketing needs an
        explicit yes (MIIT Order 31: no commercial SMS without consent). Staff notices need none."""
        if self.kind == "staff":
            return True
        consent = self.consents.get(f"{'sms' if channel == 'console' else channel}:{purpose}")
        return bool(consent) if purpose == "marketing" else consent is not False


def person_key(secret: bytes, tenant_id: uuid.UUID, address: str | None) -> str | None:
    """One person within one dealer group (budgets are per group; another group's sends never count)."""
    if not address:
        return None
    return hmac.new(secret, f"{tenant_id}:{address}".encode(), hashlib.sha256).hexdigest()[:40]


def masked(channel: str, address: str) -> str:
    return mask_number(address) if channel in PHONE_CHANNELS else f"{address[:4]}…"
