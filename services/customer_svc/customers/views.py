"""Customer read model for the API: for roles without the PII permission, a person's name (张**), phones
(138****8000), ID number and address are masked; a company's name is not personal data and stays."""

from __future__ import annotations

from typing import Any

from customer_svc.models import Customer
from shared.auth import Principal
from shared.pii import mask_address, mask_document, mask_id_number, mask_name, mask_number, mask_phone


def customer_view(c: Customer, principal: Principal) -> dict[str, Any]:
    pii = principal.sees_pii
    phones = [{"number": p.e164 if pii else mask_number(p.e164), "label": p.label, "primary": p.is_primary}
              for p in c.phones]
    id_number = c.id_number if pii or c.id_number is None else mask_id_number(c.id_number)
    address = c.address if pii or c.address is None else mask_address(c.address)
    name = c.name if pii or c.kind == "company" else mask_name(c.name)
    contact = c.contact_person if pii or c.contact_person is None else mask_name(c.contact_person)
    return {
        **{k: getattr(c, k) for k in (
            "id", "tenant_id", "store_id", "customer_no", "kind", "gender", "birthday",
            "birthday_calendar", "wedding_anniversary", "wechat_openid", "wechat_unionid", "postcode", "occupation",
            "employer", "family", "hobbies", "preferred_channel", "preferred_contact_time", "do_not_call",
            "source_code", "source_detail", "relationship_type", "intent_level", "value_class", "vip", "tags",
            "assigned_sales_id", "assigned_advisor_id", "lost_kind", "lost_at", "merged_into_id",
            "version", "created_at", "updated_at")},
        # Free text staff type: a phone number written in it is masked like the customer's own.
        **{k: getattr(c, k) if pii or getattr(c, k) is None else mask_phone(getattr(c, k))
           for k in ("notes", "lost_reason")},
        "name": name,
        "contact_person": contact,
        "phones": phones,
        "id_number": id_number,
        "address": address,
        "consents": [{"channel": x.channel, "purpose": x.purpose, "granted": x.granted, "source": x.source,
                      "recorded_at": x.recorded_at} for x in sorted(c.consents, key=lambda x: (x.channel, x.purpose))],
        "pii_masked": not pii,
    }


def duplicate_view(c: Customer, matched: list[str], principal: Principal) -> dict[str, Any]:
    """Same person in another store: beyond the caller's stores nothing but id, store, keys and date leaves."""
    mine = principal.can_access_store(c.store_id)
    view: dict[str, Any] = {"id": c.id, "store_id": c.store_id, "matched": matched, "created_at": c.created_at,
                            "in_your_stores": mine}
    if mine:
        pii, phone = principal.sees_pii, c.primary_phone
        view.update(customer_no=c.customer_no, name=c.name if pii else mask_name(c.name),
                    phone=phone if pii or phone is None else mask_number(phone))
    return view


def timeline_view(entry: Any, principal: Principal) -> dict[str, Any]:
    """A timeline item: event data as published, personal values masked for roles without the PII permission."""
    data = entry.data if principal.sees_pii else mask_document(entry.data)
    return {"id": entry.id, "event_type": entry.event_type, "source": entry.source, "occurred_at": entry.occurred_at,
            "store_id": entry.store_id, "data": data}
