"""Bad input, endpoint by endpoint: every customer_svc operation rejects malformed or contradictory requests with
an RFC 9457 problem naming the offending field, never answers 500, and writes nothing.

Each case is (method, path, body / params / headers, expected status, expected `errors[].field`). Statuses other
than 422 appear where they are the contract: 400 (body not readable at all), 401 (bad credentials), 404 (unknown
record), 409 (duplicate), 412 (stale If-Match), 428 (If-Match missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute

from customer_svc.app import CustomerRuntime
from customer_svc.audit.router import router as audit_router
from customer_svc.auth.router import keys_router, router as auth_router
from customer_svc.customers.router import router as customers_router
from customer_svc.imports.router import imports_router, upserts_router
from customer_svc.models import (ApiKey, AuditEntry, Consent, Customer, CustomerPhone, CustomerTag, MileageReading,
                                 RefreshToken, Staff, StaffStore, Store, Vehicle, VehicleOwnership, messaging)
from customer_svc.staff.router import router as staff_router
from customer_svc.stores.router import router as stores_router
from customer_svc.vehicles.router import router as vehicles_router
from shared.auth.roles import Role
from shared.errors import PROBLEM_BASE
from tests.conftest import Group, make_group, new_phone
from tests.customer_svc.sample_data import create_customer, create_vehicle, new_plate, new_vin, with_wrong_check_digit

PROBLEM = "application/problem+json"
#: The routers this table covers (visits and membership have their own suites).
COVERED_ROUTERS = [auth_router, keys_router, stores_router, staff_router, customers_router, vehicles_router,
                   audit_router, imports_router, upserts_router]
RANDOM_ID = "0190a5c4-0000-7000-8000-000000000000"
NOT_UTF8 = b'{"name": "\xff\xfe"}'
LONG = "x" * 501


@dataclass
class Bad:
    method: str
    path: str
    status: int = 422
    field: str | None = None
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = dc_field(default_factory=dict)
    role: Role = Role.ADMIN


def case(id_: str, method: str, path: str, status: int = 422, field_: str | None = None, **kw: Any) -> Any:
    return pytest.param(Bad(method, path, status, field_, **kw), id=id_)


IF_MATCH = {"If-Match": "*"}

CASES = [
    # --- auth -----------------------------------------------------------------------------------------------
    case("login-missing-fields", "POST", "/api/v1/auth/login", field_="body.tenant", json={}),
    case("login-extra-field", "POST", "/api/v1/auth/login", field_="body.remember_me",
         json={"tenant": "{tenant}", "employee_no": "admin-A", "password": "whatever", "remember_me": True}),
    case("login-wrong-type", "POST", "/api/v1/auth/login", field_="body.employee_no",
         json={"tenant": "{tenant}", "employee_no": 12345, "password": "whatever"}),
    case("login-empty-tenant", "POST", "/api/v1/auth/login", field_="body.tenant",
         json={"tenant": "", "employee_no": "admin-A", "password": "whatever"}),
    case("login-overlong-password", "POST", "/api/v1/auth/login", field_="body.password",
         json={"tenant": "{tenant}", "employee_no": "admin-A", "password": "p" * 129}),
    case("login-body-not-object", "POST", "/api/v1/auth/login", field_="body", json=["{tenant}", "admin-A"]),
    case("login-body-not-json", "POST", "/api/v1/auth/login", field_="body", content=b"tenant=x&password=y",
         headers={"Content-Type": "application/json"}),
    case("login-body-not-utf8", "POST", "/api/v1/auth/login", status=400, content=NOT_UTF8,
         headers={"Content-Type": "application/json"}),
    case("login-nul-in-tenant", "POST", "/api/v1/auth/login", field_="body.tenant",
         json={"tenant": "{tenant}\u0000", "employee_no": "admin-A", "password": "whatever"}),
    case("refresh-too-short", "POST", "/api/v1/auth/refresh", field_="body.refresh_token", json={"refresh_token": "x"}),
    case("refresh-missing", "POST", "/api/v1/auth/refresh", field_="body.refresh_token", json={}),
    case("refresh-extra", "POST", "/api/v1/auth/refresh", field_="body.staff_id",
         json={"refresh_token": "r" * 40, "staff_id": RANDOM_ID}),
    case("refresh-unknown-token", "POST", "/api/v1/auth/refresh", status=401, json={"refresh_token": "r" * 43}),
    case("logout-wrong-type", "POST", "/api/v1/auth/logout", field_="body.refresh_token", json={"refresh_token": 42}),
    case("token-too-short", "POST", "/api/v1/auth/token", field_="body.api_key", json={"api_key": "ak_1.x"}),
    case("token-too-long", "POST", "/api/v1/auth/token", field_="body.api_key", json={"api_key": "a" * 201}),
    case("token-unknown-key", "POST", "/api/v1/auth/token", status=401,
         json={"api_key": "ak_000000000000.secret-secret"}),
    case("me-garbage-token", "GET", "/api/v1/auth/me", status=401, headers={"Authorization": "Bearer not.a.jwt"}),
    # --- api keys -------------------------------------------------------------------------------------------
    case("key-unknown-scope", "POST", "/api/v1/api-keys", field_="body.scopes.1",
         json={"name": "DMS", "scopes": ["customers:read", "everything"], "store_ids": ["{store_a}"]}),
    case("key-no-scopes", "POST", "/api/v1/api-keys", field_="body.scopes",
         json={"name": "DMS", "scopes": [], "store_ids": ["{store_a}"]}),
    case("key-bad-store-uuid", "POST", "/api/v1/api-keys", field_="body.store_ids.0",
         json={"name": "DMS", "scopes": ["customers:read"], "store_ids": ["store-a"]}),
    case("key-foreign-store", "POST", "/api/v1/api-keys", field_="body.store_ids.0",
         json={"name": "DMS", "scopes": ["customers:read"], "store_ids": ["{foreign_store}"]}),
    case("key-overlong-name", "POST", "/api/v1/api-keys", field_="body.name",
         json={"name": "n" * 201, "scopes": ["customers:read"], "store_ids": ["{store_a}"]}),
    case("key-extra-field", "POST", "/api/v1/api-keys", field_="body.expires",
         json={"name": "DMS", "scopes": ["customers:read"], "store_ids": ["{store_a}"], "expires": "never"}),
    case("keys-list-garbage-token", "GET", "/api/v1/api-keys", status=401, headers={"Authorization": "Bearer x.y.z"}),
    case("key-revoke-bad-uuid", "DELETE", "/api/v1/api-keys/not-a-uuid", field_="path.key_id"),
    case("key-revoke-unknown", "DELETE", f"/api/v1/api-keys/{RANDOM_ID}", status=404),
    case("key-get-bad-uuid", "GET", "/api/v1/api-keys/not-a-uuid", field_="path.key_id"),
    case("key-patch-unknown-scope", "PATCH", f"/api/v1/api-keys/{RANDOM_ID}", field_="body.scopes.0",
         json={"scopes": ["everything"]}, headers=IF_MATCH),
    case("key-patch-null-name", "PATCH", f"/api/v1/api-keys/{RANDOM_ID}", field_="body.name",
         json={"name": None}, headers=IF_MATCH),
    case("key-rotate-overlap-too-long", "POST", f"/api/v1/api-keys/{RANDOM_ID}/rotate", field_="body.overlap_hours",
         json={"overlap_hours": 169}),
    case("key-calls-bad-limit", "GET", f"/api/v1/api-keys/{RANDOM_ID}/calls", field_="query.limit",
         params={"limit": 0}),
    # --- stores ---------------------------------------------------------------------------------------------
    case("store-bad-timezone", "POST", "/api/v1/stores", field_="body.timezone",
         json={"code": "NEW-1", "name": "新店", "timezone": "Mars/Olympus_Mons"}),
    case("store-timezone-abbrev-path", "POST", "/api/v1/stores", field_="body.timezone",
         json={"code": "NEW-1", "name": "新店", "timezone": "../../etc/passwd"}),
    case("store-hours-reversed", "POST", "/api/v1/stores", field_="body.business_hours.mon",
         json={"code": "NEW-1", "name": "新店", "business_hours": {"mon": ["18:00", "08:30"]}}),
    case("store-hours-unknown-day", "POST", "/api/v1/stores", field_="body.business_hours",
         json={"code": "NEW-1", "name": "新店", "business_hours": {"funday": ["08:00", "18:00"]}}),
    case("store-hours-25h", "POST", "/api/v1/stores", field_="body.business_hours.tue",
         json={"code": "NEW-1", "name": "新店", "business_hours": {"tue": ["08:00", "25:00"]}}),
    case("store-hours-three-times", "POST", "/api/v1/stores", field_="body.business_hours.wed",
         json={"code": "NEW-1", "name": "新店", "business_hours": {"wed": ["08:00", "12:00", "18:00"]}}),
    case("store-hours-not-strings", "POST", "/api/v1/stores", field_="body.business_hours.thu.0",
         json={"code": "NEW-1", "name": "新店", "business_hours": {"thu": [8, 18]}}),
    case("store-code-with-space", "POST", "/api/v1/stores", field_="body.code", json={"code": "NEW 1", "name": "新店"}),
    case("store-bad-phone", "POST", "/api/v1/stores", field_="body.phone",
         json={"code": "NEW-1", "name": "新店", "phone": "12345"}),
    case("store-overlong-address", "POST", "/api/v1/stores", field_="body.address",
         json={"code": "NEW-1", "name": "新店", "address": LONG}),
    case("store-extra-field", "POST", "/api/v1/stores", field_="body.manager",
         json={"code": "NEW-1", "name": "新店", "manager": "王经理"}),
    case("store-duplicate-code", "POST", "/api/v1/stores", status=409, json={"code": "A", "name": "Another A"}),
    case("store-blank-idempotency-key", "POST", "/api/v1/stores", field_="header.Idempotency-Key",
         json={"code": "NEW-1", "name": "新店"}, headers={"Idempotency-Key": "   "}),
    case("store-overlong-idempotency-key", "POST", "/api/v1/stores", field_="header.Idempotency-Key",
         json={"code": "NEW-1", "name": "新店"}, headers={"Idempotency-Key": "k" * 201}),
    case("stores-list-garbage-token", "GET", "/api/v1/stores", status=401, headers={"Authorization": "Bearer abc"}),
    case("store-get-bad-uuid", "GET", "/api/v1/stores/A", field_="path.store_id"),
    case("store-get-unknown", "GET", f"/api/v1/stores/{RANDOM_ID}", status=404),
    case("store-patch-bad-timezone", "PATCH", "/api/v1/stores/{store_a}", field_="body.timezone",
         json={"timezone": "Asia/Beijing"}, headers=IF_MATCH),
    case("store-patch-bad-hours", "PATCH", "/api/v1/stores/{store_a}", field_="body.business_hours.sat",
         json={"business_hours": {"sat": ["9:00", "17:00"]}}, headers=IF_MATCH),
    case("store-patch-null-name", "PATCH", "/api/v1/stores/{store_a}", field_="body.name", json={"name": None},
         headers=IF_MATCH),
    case("store-patch-null-active", "PATCH", "/api/v1/stores/{store_a}", field_="body.active", json={"active": None},
         headers=IF_MATCH),
    case("store-patch-active-not-bool", "PATCH", "/api/v1/stores/{store_a}", field_="body.active",
         json={"active": "sometimes"}, headers=IF_MATCH),
    case("store-patch-code", "PATCH", "/api/v1/stores/{store_a}", field_="body.code", json={"code": "B"},
         headers=IF_MATCH),
    case("store-patch-no-if-match", "PATCH", "/api/v1/stores/{store_a}", status=428, json={"name": "x"}),
    case("store-patch-stale-if-match", "PATCH", "/api/v1/stores/{store_a}", status=412, json={"name": "x"},
         headers={"If-Match": 'W/"999"'}),
    case("store-patch-overlong-if-match", "PATCH", "/api/v1/stores/{store_a}", field_="header.If-Match",
         json={"name": "x"}, headers={"If-Match": "W/" + "9" * 300}),
    # --- staff ----------------------------------------------------------------------------------------------
    case("staff-unknown-role", "POST", "/api/v1/staff", field_="body.roles.0",
         json={"employee_no": "N1", "name": "新人", "roles": ["ceo"], "store_ids": ["{store_a}"],
               "password": "long-enough-password"}),
    case("staff-short-password", "POST", "/api/v1/staff", field_="body.password",
         json={"employee_no": "N1", "name": "新人", "roles": ["cs_agent"], "store_ids": ["{store_a}"],
               "password": "short"}),
    case("staff-bad-employee-no", "POST", "/api/v1/staff", field_="body.employee_no",
         json={"employee_no": "N 1", "name": "新人", "roles": ["cs_agent"], "store_ids": ["{store_a}"],
               "password": "long-enough-password"}),
    case("staff-bad-gender", "POST", "/api/v1/staff", field_="body.gender",
         json={"employee_no": "N1", "name": "新人", "gender": "unknown", "roles": ["cs_agent"],
               "store_ids": ["{store_a}"], "password": "long-enough-password"}),
    case("staff-no-stores", "POST", "/api/v1/staff", field_="body.store_ids",
         json={"employee_no": "N1", "name": "新人", "roles": ["cs_agent"], "store_ids": [],
               "password": "long-enough-password"}),
    case("staff-foreign-store", "POST", "/api/v1/staff", field_="body.store_ids.1",
         json={"employee_no": "N1", "name": "新人", "roles": ["cs_agent"], "store_ids": ["{store_a}", "{foreign_store}"],
               "password": "long-enough-password"}),
    case("staff-bad-phone", "POST", "/api/v1/staff", field_="body.phone",
         json={"employee_no": "N1", "name": "新人", "phone": "+86 000", "roles": ["cs_agent"],
               "store_ids": ["{store_a}"], "password": "long-enough-password"}),
    case("staff-extra-field", "POST", "/api/v1/staff", field_="body.salary",
         json={"employee_no": "N1", "name": "新人", "roles": ["cs_agent"], "store_ids": ["{store_a}"],
               "password": "long-enough-password", "salary": 10000}),
    case("staff-duplicate-employee-no", "POST", "/api/v1/staff", status=409,
         json={"employee_no": "cs_agent-A", "name": "重名", "roles": ["cs_agent"], "store_ids": ["{store_a}"],
               "password": "long-enough-password"}),
    case("staff-search-limit-zero", "GET", "/api/v1/staff", field_="query.limit", params={"limit": 0}),
    case("staff-search-limit-too-big", "GET", "/api/v1/staff", field_="query.limit", params={"limit": 201}),
    case("staff-search-bad-cursor", "GET", "/api/v1/staff", field_="query.cursor", params={"cursor": "!!not-a-cursor"}),
    case("staff-search-short-cursor", "GET", "/api/v1/staff", field_="query.cursor", params={"cursor": "AAAA"}),
    case("staff-search-bad-store", "GET", "/api/v1/staff", field_="query.store_id", params={"store_id": "A"}),
    case("staff-search-bad-active", "GET", "/api/v1/staff", field_="query.active", params={"active": "perhaps"}),
    case("staff-search-overlong-q", "GET", "/api/v1/staff", field_="query.q", params={"q": "q" * 101}),
    case("staff-get-bad-uuid", "GET", "/api/v1/staff/admin-A", field_="path.staff_id"),
    case("staff-patch-unknown-role", "PATCH", "/api/v1/staff/{staff_id}", field_="body.roles.0",
         json={"roles": ["boss"]}, headers=IF_MATCH),
    case("staff-patch-null-active", "PATCH", "/api/v1/staff/{staff_id}", field_="body.active", json={"active": None},
         headers=IF_MATCH),
    case("staff-patch-null-name", "PATCH", "/api/v1/staff/{staff_id}", field_="body.name", json={"name": None},
         headers=IF_MATCH),
    case("staff-patch-employee-no", "PATCH", "/api/v1/staff/{staff_id}", field_="body.employee_no",
         json={"employee_no": "boss"}, headers=IF_MATCH),
    case("staff-patch-no-if-match", "PATCH", "/api/v1/staff/{staff_id}", status=428, json={"name": "x"}),
    case("staff-patch-unknown", "PATCH", f"/api/v1/staff/{RANDOM_ID}", status=404, json={"name": "x"},
         headers=IF_MATCH),
    # --- customers: create ----------------------------------------------------------------------------------
    case("customer-bad-phone", "POST", "/api/v1/customers", field_="body.phones.0.number",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "12345"}]}),
    case("customer-landline-too-short", "POST", "/api/v1/customers", field_="body.phones.1.number",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}, {"number": "0755-123"}]}),
    case("customer-no-phones", "POST", "/api/v1/customers", field_="body.phones",
         json={"store_id": "{store_a}", "name": "张三", "phones": []}),
    case("customer-same-phone-twice", "POST", "/api/v1/customers", field_="body.phones",
         json={"store_id": "{store_a}", "name": "张三",
               "phones": [{"number": "{fresh_phone}"}, {"number": "{fresh_phone_local}"}]}),
    case("customer-two-primaries", "POST", "/api/v1/customers", field_="body.phones",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}", "primary": True},
                                                                   {"number": "{fresh_phone2}", "primary": True}]}),
    case("customer-bad-id-number", "POST", "/api/v1/customers", field_="body.id_number",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "id_number": "110105194912310021"}),
    case("customer-unknown-gender", "POST", "/api/v1/customers", field_="body.gender",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "gender": "robot"}),
    case("customer-future-birthday", "POST", "/api/v1/customers", field_="body.birthday",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "birthday": "2999-01-01"}),
    case("customer-impossible-birthday", "POST", "/api/v1/customers", field_="body.birthday",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "birthday": "1990-02-30"}),
    case("customer-timestamp-birthday", "POST", "/api/v1/customers", field_="body.birthday",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "birthday": 0}),
    case("customer-unknown-calendar", "POST", "/api/v1/customers", field_="body.birthday_calendar",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "birthday_calendar": "julian"}),
    case("customer-bad-postcode", "POST", "/api/v1/customers", field_="body.postcode",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "postcode": "51800A"}),
    case("customer-created-as-lost", "POST", "/api/v1/customers", field_="body.relationship_type",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "relationship_type": "lost"}),
    case("customer-unknown-intent", "POST", "/api/v1/customers", field_="body.intent_level",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "intent_level": "Z"}),
    case("customer-unknown-source", "POST", "/api/v1/customers", field_="body.source_code",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "source_code": "X"}),
    case("customer-extra-field", "POST", "/api/v1/customers", field_="body.credit_score",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "credit_score": 700}),
    case("customer-extra-phone-field", "POST", "/api/v1/customers", field_="body.phones.0.verified",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}", "verified": True}]}),
    case("customer-overlong-name", "POST", "/api/v1/customers", field_="body.name",
         json={"store_id": "{store_a}", "name": "名" * 201, "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-blank-name", "POST", "/api/v1/customers", field_="body.name",
         json={"store_id": "{store_a}", "name": "   ", "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-name-wrong-type", "POST", "/api/v1/customers", field_="body.name",
         json={"store_id": "{store_a}", "name": ["张", "三"], "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-nul-in-name", "POST", "/api/v1/customers", field_="body.name",
         json={"store_id": "{store_a}", "name": "张\u0000三", "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-nul-in-family", "POST", "/api/v1/customers", field_="body.family.note",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "family": {"size": 3, "note": "two\u0000kids"}}),
    case("customer-overlong-tag", "POST", "/api/v1/customers", field_="body.tags",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "tags": ["t" * 51]}),
    case("customer-overlong-notes", "POST", "/api/v1/customers", field_="body.notes",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "notes": "n" * 5001}),
    case("customer-unknown-consent-channel", "POST", "/api/v1/customers", field_="body.consents.0.channel",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "consents": [{"channel": "fax", "purpose": "service", "granted": True, "source": "form"}]}),
    case("customer-bad-store-uuid", "POST", "/api/v1/customers", field_="body.store_id",
         json={"store_id": "A", "name": "张三", "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-unknown-store", "POST", "/api/v1/customers", status=404,
         json={"store_id": RANDOM_ID, "name": "张三", "phones": [{"number": "{fresh_phone}"}]}),
    case("customer-unknown-assignee", "POST", "/api/v1/customers", field_="body.assigned_sales_id",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "assigned_sales_id": RANDOM_ID}),
    case("customer-bad-customer-no", "POST", "/api/v1/customers", field_="body.customer_no",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}], "customer_no": "C 1"}),
    case("customer-taken-customer-no", "POST", "/api/v1/customers", field_="body.customer_no",
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{fresh_phone}"}],
               "customer_no": "{customer_no}"}),
    case("customer-duplicate-phone", "POST", "/api/v1/customers", status=409,
         json={"store_id": "{store_a}", "name": "张三", "phones": [{"number": "{customer_phone}"}]}),
    case("customer-body-not-utf8", "POST", "/api/v1/customers", status=400, content=NOT_UTF8,
         headers={"Content-Type": "application/json"}),
    case("customer-truncated-json", "POST", "/api/v1/customers", field_="body", content=b'{"store_id":',
         headers={"Content-Type": "application/json"}),
    # --- customers: search ----------------------------------------------------------------------------------
    case("search-bad-phone", "GET", "/api/v1/customers", field_="query.phone", params={"phone": "12345"}),
    case("search-overlong-phone", "GET", "/api/v1/customers", field_="query.phone", params={"phone": "1" * 33}),
    case("search-bad-plate", "GET", "/api/v1/customers", field_="query.plate", params={"plate": "ABC123"}),
    case("search-vin-check-digit", "GET", "/api/v1/customers", field_="query.vin",
         params={"vin": with_wrong_check_digit("LSVAU218XN2183294")}),
    case("search-vin-too-long", "GET", "/api/v1/customers", field_="query.vin", params={"vin": "LSVAU218XN21832940"}),
    case("search-vin-letter-o", "GET", "/api/v1/customers", field_="query.vin", params={"vin": "LSVAU218XN2183O94"}),
    case("search-unknown-relationship", "GET", "/api/v1/customers", field_="query.relationship_type",
         params={"relationship_type": "vip"}),
    case("search-unknown-intent", "GET", "/api/v1/customers", field_="query.intent_level",
         params={"intent_level": "Z"}),
    case("search-naive-created-from", "GET", "/api/v1/customers", field_="query.created_from",
         params={"created_from": "2026-01-01T00:00:00"}),
    case("search-timestamp-created-to", "GET", "/api/v1/customers", field_="query.created_to",
         params={"created_to": "0.5"}),
    case("search-words-created-from", "GET", "/api/v1/customers", field_="query.created_from",
         params={"created_from": "yesterday"}),
    case("search-birthday-from-alone", "GET", "/api/v1/customers", field_="query.birthday_to",
         params={"birthday_from": "2026-03-01"}),
    case("search-birthday-range-too-long", "GET", "/api/v1/customers", field_="query.birthday_to",
         params={"birthday_from": "2026-01-01", "birthday_to": "2027-06-01"}),
    case("search-birthday-range-reversed", "GET", "/api/v1/customers", field_="query.birthday_to",
         params={"birthday_from": "2026-03-07", "birthday_to": "2026-03-01"}),
    case("search-impossible-birthday", "GET", "/api/v1/customers", field_="query.birthday_from",
         params={"birthday_from": "2026-13-01", "birthday_to": "2026-12-31"}),
    case("search-bad-store", "GET", "/api/v1/customers", field_="query.store_id", params={"store_id": "store-a"}),
    case("search-bad-assignee", "GET", "/api/v1/customers", field_="query.assigned_to", params={"assigned_to": "me"}),
    case("search-bad-cursor", "GET", "/api/v1/customers", field_="query.cursor", params={"cursor": "%%%"}),
    case("search-overlong-cursor", "GET", "/api/v1/customers", field_="query.cursor", params={"cursor": "A" * 65}),
    case("search-limit-not-number", "GET", "/api/v1/customers", field_="query.limit", params={"limit": "ten"}),
    case("search-negative-limit", "GET", "/api/v1/customers", field_="query.limit", params={"limit": -1}),
    case("search-empty-q", "GET", "/api/v1/customers", field_="query.q", params={"q": ""}),
    case("search-nul-in-q", "GET", "/api/v1/customers", field_="query.q", params={"q": "张\u0000"}),
    case("search-overlong-tag", "GET", "/api/v1/customers", field_="query.tag", params={"tag": "t" * 51}),
    # --- customers: one record ------------------------------------------------------------------------------
    case("customer-get-bad-uuid", "GET", "/api/v1/customers/12345", field_="path.customer_id"),
    case("customer-get-unknown", "GET", f"/api/v1/customers/{RANDOM_ID}", status=404),
    case("customer-patch-no-if-match", "PATCH", "/api/v1/customers/{customer_id}", status=428, json={"name": "新"}),
    case("customer-patch-stale", "PATCH", "/api/v1/customers/{customer_id}", status=412, json={"name": "新"},
         headers={"If-Match": 'W/"42"'}),
    case("customer-patch-null-name", "PATCH", "/api/v1/customers/{customer_id}", field_="body.name",
         json={"name": None}, headers=IF_MATCH),
    case("customer-patch-null-vip", "PATCH", "/api/v1/customers/{customer_id}", field_="body.vip",
         json={"vip": None}, headers=IF_MATCH),
    case("customer-patch-bad-phone", "PATCH", "/api/v1/customers/{customer_id}", field_="body.phones.0.number",
         json={"phones": [{"number": "999"}]}, headers=IF_MATCH),
    case("customer-patch-move-store", "PATCH", "/api/v1/customers/{customer_id}", field_="body.store_id",
         json={"store_id": "{store_b}"}, headers=IF_MATCH),
    case("customer-patch-to-lost", "PATCH", "/api/v1/customers/{customer_id}", field_="body.relationship_type",
         json={"relationship_type": "lost"}, headers=IF_MATCH),
    case("customer-patch-bad-anniversary", "PATCH", "/api/v1/customers/{customer_id}",
         field_="body.wedding_anniversary", json={"wedding_anniversary": "next June"}, headers=IF_MATCH),
    case("customer-patch-bad-id-number", "PATCH", "/api/v1/customers/{customer_id}", field_="body.id_number",
         json={"id_number": "1101051949123100"}, headers=IF_MATCH),
    case("customer-patch-hobbies-not-list", "PATCH", "/api/v1/customers/{customer_id}", field_="body.hobbies",
         json={"hobbies": "golf"}, headers=IF_MATCH),
    case("customer-patch-unknown-assignee", "PATCH", "/api/v1/customers/{customer_id}",
         field_="body.assigned_advisor_id", json={"assigned_advisor_id": RANDOM_ID}, headers=IF_MATCH),
    case("customer-patch-duplicate-phone", "PATCH", "/api/v1/customers/{customer_id}", status=409,
         json={"phones": [{"number": "{other_phone}"}]}, headers=IF_MATCH),
    case("customer-patch-bad-uuid", "PATCH", "/api/v1/customers/x", field_="path.customer_id", json={"name": "新"},
         headers=IF_MATCH),
    case("consent-unknown-channel", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.channel",
         json={"channel": "fax", "purpose": "service", "granted": True, "source": "form"}),
    case("consent-unknown-purpose", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.purpose",
         json={"channel": "sms", "purpose": "spam", "granted": True, "source": "form"}),
    case("consent-granted-not-bool", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.granted",
         json={"channel": "sms", "purpose": "service", "granted": "yes please", "source": "form"}),
    case("consent-empty-source", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.source",
         json={"channel": "sms", "purpose": "service", "granted": True, "source": ""}),
    case("consent-missing-source", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.source",
         json={"channel": "sms", "purpose": "service", "granted": True}),
    case("consent-extra-field", "PUT", "/api/v1/customers/{customer_id}/consents", field_="body.expires_at",
         json={"channel": "sms", "purpose": "service", "granted": True, "source": "form", "expires_at": "2030-01-01"}),
    case("consent-unknown-customer", "PUT", f"/api/v1/customers/{RANDOM_ID}/consents", status=404,
         json={"channel": "sms", "purpose": "service", "granted": True, "source": "form"}),
    case("lost-reason-too-short", "POST", "/api/v1/customers/{customer_id}/lost", field_="body.reason",
         json={"reason": "x"}, role=Role.SALES_MANAGER),
    case("lost-missing-reason", "POST", "/api/v1/customers/{customer_id}/lost", field_="body.reason",
         json={"kind": "defeated"}, role=Role.SALES_MANAGER),
    case("lost-unknown-kind", "POST", "/api/v1/customers/{customer_id}/lost", field_="body.kind",
         json={"reason": "bought elsewhere", "kind": "vanished"}, role=Role.SALES_MANAGER),
    case("lost-owner-not-prospect", "POST", "/api/v1/customers/{owner_id}/lost", status=422,
         json={"reason": "bought elsewhere"}, role=Role.SALES_MANAGER),
    case("lost-bad-uuid", "POST", "/api/v1/customers/abc/lost", field_="path.customer_id",
         json={"reason": "bought elsewhere"}, role=Role.SALES_MANAGER),
    case("timeline-limit-too-big", "GET", "/api/v1/customers/{customer_id}/timeline", field_="query.limit",
         params={"limit": 1000}),
    case("timeline-bad-cursor", "GET", "/api/v1/customers/{customer_id}/timeline", field_="query.cursor",
         params={"cursor": "@@@"}),
    case("timeline-bad-uuid", "GET", "/api/v1/customers/none/timeline", field_="path.customer_id"),
    case("duplicates-bad-uuid", "GET", "/api/v1/customers/none/duplicates", field_="path.customer_id"),
    case("duplicates-unknown", "GET", f"/api/v1/customers/{RANDOM_ID}/duplicates", status=404),
    case("merge-missing-duplicate", "POST", "/api/v1/customers/{customer_id}/merge", field_="body.duplicate_id",
         json={}, role=Role.CS_MANAGER),
    case("merge-bad-duplicate-uuid", "POST", "/api/v1/customers/{customer_id}/merge", field_="body.duplicate_id",
         json={"duplicate_id": "the other one"}, role=Role.CS_MANAGER),
    case("merge-extra-field", "POST", "/api/v1/customers/{customer_id}/merge", field_="body.keep",
         json={"duplicate_id": "{other_id}", "keep": "both"}, role=Role.CS_MANAGER),
    # --- vehicles -------------------------------------------------------------------------------------------
    case("vehicle-vin-check-digit", "POST", "/api/v1/vehicles", field_="body.vin",
         json={"customer_id": "{customer_id}", "vin": "{bad_check_vin}"}),
    case("vehicle-vin-too-short", "POST", "/api/v1/vehicles", field_="body.vin",
         json={"customer_id": "{customer_id}", "vin": "LSVAU218XN218329"}),
    case("vehicle-vin-letter-i", "POST", "/api/v1/vehicles", field_="body.vin",
         json={"customer_id": "{customer_id}", "vin": "LSVAU218XN21832I4"}),
    case("vehicle-bad-plate", "POST", "/api/v1/vehicles", field_="body.plate",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "plate": "AB12345"}),
    case("vehicle-plate-letter-o", "POST", "/api/v1/vehicles", field_="body.plate",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "plate": "粤BO1234"}),
    case("vehicle-negative-mileage", "POST", "/api/v1/vehicles", field_="body.mileage_km",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "mileage_km": -1}),
    case("vehicle-mileage-not-number", "POST", "/api/v1/vehicles", field_="body.mileage_km",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "mileage_km": "far"}),
    case("vehicle-mileage-fraction", "POST", "/api/v1/vehicles", field_="body.mileage_km",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "mileage_km": 12.5}),
    case("vehicle-future-purchase", "POST", "/api/v1/vehicles", field_="body.purchase_date",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "purchase_date": "2999-12-31"}),
    case("vehicle-delivery-before-purchase", "POST", "/api/v1/vehicles", field_="body.delivery_date",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "purchase_date": "2025-03-01",
               "delivery_date": "2025-02-01"}),
    case("vehicle-impossible-insurance-date", "POST", "/api/v1/vehicles", field_="body.insurance_expiry",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "insurance_expiry": "2026-02-30"}),
    case("vehicle-timestamp-purchase-date", "POST", "/api/v1/vehicles", field_="body.purchase_date",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "purchase_date": 1700000000}),
    case("vehicle-unknown-purchase-method", "POST", "/api/v1/vehicles", field_="body.purchase_method",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "purchase_method": "lease"}),
    case("vehicle-unknown-customer", "POST", "/api/v1/vehicles", field_="body.customer_id",
         json={"customer_id": RANDOM_ID, "vin": "{fresh_vin}"}),
    case("vehicle-missing-customer", "POST", "/api/v1/vehicles", field_="body.customer_id",
         json={"vin": "{fresh_vin}"}),
    case("vehicle-overlong-brand", "POST", "/api/v1/vehicles", field_="body.brand",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "brand": "b" * 61}),
    case("vehicle-extra-field", "POST", "/api/v1/vehicles", field_="body.price",
         json={"customer_id": "{customer_id}", "vin": "{fresh_vin}", "price": 250000}),
    case("vehicle-duplicate-vin", "POST", "/api/v1/vehicles", status=409,
         json={"customer_id": "{other_id}", "vin": "{vin}"}),
    case("vehicles-bad-plate", "GET", "/api/v1/vehicles", field_="query.plate", params={"plate": "粤"}),
    case("vehicles-vin-check-digit", "GET", "/api/v1/vehicles", field_="query.vin", params={"vin": "{bad_check_vin}"}),
    case("vehicles-bad-customer", "GET", "/api/v1/vehicles", field_="query.customer_id", params={"customer_id": "x"}),
    case("vehicles-bad-cursor", "GET", "/api/v1/vehicles", field_="query.cursor", params={"cursor": "a"}),
    case("vehicles-limit-zero", "GET", "/api/v1/vehicles", field_="query.limit", params={"limit": 0}),
    case("vehicle-get-bad-uuid", "GET", "/api/v1/vehicles/{vin}", field_="path.vehicle_id"),
    case("vehicle-get-unknown", "GET", f"/api/v1/vehicles/{RANDOM_ID}", status=404),
    case("vehicle-patch-negative-mileage", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.mileage_km",
         json={"mileage_km": -500}, headers=IF_MATCH),
    case("vehicle-patch-mileage-goes-back", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.mileage_km",
         json={"mileage_km": 4000}, headers=IF_MATCH),
    case("vehicle-patch-too-much-mileage", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.mileage_km",
         json={"mileage_km": 2_000_001}, headers=IF_MATCH),
    case("vehicle-patch-bad-plate", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.plate",
         json={"plate": "粤B123"}, headers=IF_MATCH),
    case("vehicle-patch-vin", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.vin",
         json={"vin": "{fresh_vin}"}, headers=IF_MATCH),
    case("vehicle-patch-bad-date", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.next_inspection_date",
         json={"next_inspection_date": "31/12/2026"}, headers=IF_MATCH),
    case("vehicle-patch-future-purchase", "PATCH", "/api/v1/vehicles/{vehicle_id}", field_="body.purchase_date",
         json={"purchase_date": "2999-01-01"}, headers=IF_MATCH),
    case("vehicle-patch-no-if-match", "PATCH", "/api/v1/vehicles/{vehicle_id}", status=428, json={"colour": "red"}),
    case("vehicle-patch-stale", "PATCH", "/api/v1/vehicles/{vehicle_id}", status=412, json={"colour": "red"},
         headers={"If-Match": 'W/"7"'}),
    case("delivery-bad-date", "POST", "/api/v1/vehicles/{vehicle_id}/delivery", field_="body.delivery_date",
         json={"delivery_date": "tomorrow"}),
    case("delivery-missing-date", "POST", "/api/v1/vehicles/{vehicle_id}/delivery", field_="body.delivery_date",
         json={}),
    case("delivery-before-purchase", "POST", "/api/v1/vehicles/{vehicle_id}/delivery", field_="body.delivery_date",
         json={"delivery_date": "2025-01-01"}),
    case("delivery-extra-field", "POST", "/api/v1/vehicles/{vehicle_id}/delivery", field_="body.handed_over_by",
         json={"delivery_date": "2025-04-01", "handed_over_by": "王"}),
    case("delivery-unknown-vehicle", "POST", f"/api/v1/vehicles/{RANDOM_ID}/delivery", status=404,
         json={"delivery_date": "2025-04-01"}),
    case("transfer-bad-customer-uuid", "POST", "/api/v1/vehicles/{vehicle_id}/transfer", field_="body.customer_id",
         json={"customer_id": "new owner"}),
    case("transfer-unknown-customer", "POST", "/api/v1/vehicles/{vehicle_id}/transfer", field_="body.customer_id",
         json={"customer_id": RANDOM_ID}),
    case("transfer-other-store", "POST", "/api/v1/vehicles/{vehicle_id}/transfer", field_="body.customer_id",
         json={"customer_id": "{customer_b}"}),
    case("transfer-overlong-reason", "POST", "/api/v1/vehicles/{vehicle_id}/transfer", field_="body.reason",
         json={"customer_id": "{other_id}", "reason": "r" * 201}),
    case("transfer-extra-field", "POST", "/api/v1/vehicles/{vehicle_id}/transfer", field_="body.price",
         json={"customer_id": "{other_id}", "price": 1}),
    case("ownership-bad-uuid", "GET", "/api/v1/vehicles/1/ownership", field_="path.vehicle_id"),
    # --- audit ----------------------------------------------------------------------------------------------
    case("audit-no-filter", "GET", "/api/v1/audit", field_="query.record_id", role=Role.SALES_MANAGER),
    case("audit-bad-record", "GET", "/api/v1/audit", field_="query.record_id", params={"record_id": "customer"}),
    case("audit-bad-actor", "GET", "/api/v1/audit", field_="query.actor_id", params={"actor_id": "admin-A"}),
    case("audit-bad-cursor", "GET", "/api/v1/audit", field_="query.cursor",
         params={"record_id": "{customer_id}", "cursor": "xyz"}),
    case("audit-limit-too-big", "GET", "/api/v1/audit", field_="query.limit",
         params={"record_id": "{customer_id}", "limit": 201}),
    # --- imports and upserts (integration intake) ------------------------------------------------------------
    case("import-no-kind", "POST", "/api/v1/imports", field_="query.kind", content=b"a,b\n",
         headers={"Content-Type": "text/csv"}),
    case("import-unknown-kind", "POST", "/api/v1/imports", field_="query.kind", params={"kind": "orders"},
         content=b"a,b\n", headers={"Content-Type": "text/csv"}),
    case("import-unknown-media", "POST", "/api/v1/imports", field_="query.format", params={"kind": "customers"},
         content=b"a,b\n", headers={"Content-Type": "application/pdf"}),
    case("import-empty-file", "POST", "/api/v1/imports", field_="body", params={"kind": "customers"},
         content=b"", headers={"Content-Type": "text/csv"}),
    case("import-bad-encoding", "POST", "/api/v1/imports", field_="query.encoding",
         params={"kind": "customers", "encoding": "latin-1"}, content=b"a\n", headers={"Content-Type": "text/csv"}),
    case("import-list-bad-cursor", "GET", "/api/v1/imports", field_="query.cursor", params={"cursor": "xyz"}),
    case("import-bad-id", "GET", "/api/v1/imports/1", field_="path.job_id"),
    case("import-unknown-id", "GET", f"/api/v1/imports/{RANDOM_ID}", status=404),
    case("import-rows-bad-status", "GET", f"/api/v1/imports/{RANDOM_ID}/rows", field_="query.status",
         params={"status": "maybe"}),
    case("import-rows-bad-cursor", "GET", f"/api/v1/imports/{RANDOM_ID}/rows", field_="query.cursor",
         params={"cursor": "-1"}),
    case("import-report-bad-format", "GET", f"/api/v1/imports/{RANDOM_ID}/report", field_="query.format",
         params={"format": "xlsx"}),
    case("upsert-customer-bad-phone", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.phone",
         json={"name": "张三", "phone": "12345", "store_code": "A"}),
    case("upsert-customer-no-name", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.name",
         json={"phone": "{fresh_phone}", "store_code": "A"}),
    case("upsert-customer-since-in-the-future", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.since",
         json={"name": "张三", "phone": "{fresh_phone}", "store_code": "A", "since": "2999-01-01"}),
    case("upsert-customer-vehicle-without-vin", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.vin",
         json={"name": "张三", "phone": "{fresh_phone}", "store_code": "A", "plate": "{plate}"}),
    case("upsert-customer-foreign-store", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.store_id",
         json={"name": "张三", "phone": "{fresh_phone}", "store_id": "{foreign_store}"}),
    case("upsert-customer-id-mismatch", "PUT", "/api/v1/integration/customers/DMS-1", field_="body.external_id",
         json={"external_id": "DMS-2", "name": "张三", "phone": "{fresh_phone}", "store_code": "A"}),
    case("upsert-delivery-bad-vin", "PUT", "/api/v1/integration/vehicles/{bad_check_vin}/delivery",
         field_="path.vin", json={"delivery_date": "2026-01-05"}),
    case("upsert-delivery-unknown-vin", "PUT", "/api/v1/integration/vehicles/{fresh_vin}/delivery",
         field_="path.vin", json={"delivery_date": "2026-01-05"}),
    case("upsert-delivery-bad-date", "PUT", "/api/v1/integration/vehicles/{vin}/delivery",
         field_="body.delivery_date", json={"delivery_date": "5 Jan"}),
    case("upsert-delivery-before-purchase", "PUT", "/api/v1/integration/vehicles/{vin}/delivery",
         field_="body.delivery_date", json={"delivery_date": "2025-02-01"}),
    case("upsert-visit-bad-type", "PUT", "/api/v1/integration/visits/RO-1", field_="body.visit_type",
         json={"vin": "{vin}", "visit_type": "wash", "completed_at": "2026-01-05 10:00"}),
    case("upsert-visit-future", "PUT", "/api/v1/integration/visits/RO-1", field_="body.completed_at",
         json={"vin": "{vin}", "visit_type": "保养", "completed_at": "2099-01-05 10:00"}),
]


def fill(value: Any, world: dict[str, str]) -> Any:
    """Substitute ``{name}`` placeholders with the world's ids and values."""
    if isinstance(value, str) and "{" in value:
        return value.format(**world)
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


@pytest.fixture(scope="module")
async def group_m(customer_runtime: CustomerRuntime) -> Group:
    return await make_group(customer_runtime)


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient, customer_runtime: CustomerRuntime, group_m: Group) -> dict[str, str]:
    g = group_m
    customer = await create_customer(client, g, g.store_a)
    other = await create_customer(client, g, g.store_a)
    owner = await create_customer(client, g, g.store_a, relationship_type="owner")
    customer_b = await create_customer(client, g, g.store_b)
    vehicle = await create_vehicle(client, g, customer["id"], purchase_date="2025-03-01", mileage_km=5000)
    staff = (await client.get("/api/v1/staff", params={"q": "cs_agent-A"}, headers=g.headers())).json()["items"][0]
    foreign = await make_group(customer_runtime)
    fresh = new_phone()
    return {
        "tenant": g.code, "store_a": str(g.store_a), "store_b": str(g.store_b), "foreign_store": str(foreign.store_a),
        "customer_id": customer["id"], "customer_no": customer["customer_no"],
        "customer_phone": customer["phones"][0]["number"], "other_id": other["id"],
        "other_phone": other["phones"][0]["number"], "owner_id": owner["id"], "customer_b": customer_b["id"],
        "vehicle_id": vehicle["id"], "vin": vehicle["vin"], "staff_id": staff["id"],
        "fresh_phone": fresh, "fresh_phone_local": f"{fresh[3:6]} {fresh[6:10]} {fresh[10:]}",
        "fresh_phone2": new_phone(),
        "fresh_vin": new_vin(), "bad_check_vin": with_wrong_check_digit(new_vin()), "plate": new_plate(),
    }


async def fingerprint(group: Group) -> dict[str, Any]:
    """Everything a request could have written for this dealer group."""
    t = group.tenant_id
    customers = sa.select(Customer.id).where(Customer.tenant_id == t)
    vehicles = sa.select(Vehicle.id).where(Vehicle.tenant_id == t)
    staff = sa.select(Staff.id).where(Staff.tenant_id == t)
    count = sa.func.count()
    queries = {
        "customers": sa.select(count, sa.func.sum(Customer.version)).where(Customer.tenant_id == t),
        "vehicles": sa.select(count, sa.func.sum(Vehicle.version)).where(Vehicle.tenant_id == t),
        "stores": sa.select(count, sa.func.sum(Store.version)).where(Store.tenant_id == t),
        "staff": sa.select(count, sa.func.sum(Staff.version), sa.func.sum(Staff.failed_logins))
        .where(Staff.tenant_id == t),
        "api_keys": sa.select(count).select_from(ApiKey).where(ApiKey.tenant_id == t),
        "audit": sa.select(count).select_from(AuditEntry).where(AuditEntry.tenant_id == t),
        "idempotency": sa.select(count).select_from(messaging.idempotency).where(messaging.idempotency.tenant_id == t),
        "phones": sa.select(count).select_from(CustomerPhone).where(CustomerPhone.tenant_id == t),
        "tags": sa.select(count).select_from(CustomerTag).where(CustomerTag.tenant_id == t),
        "consents": sa.select(count).select_from(Consent).where(Consent.customer_id.in_(customers)),
        "mileage": sa.select(count).select_from(MileageReading).where(MileageReading.vehicle_id.in_(vehicles)),
        "owners": sa.select(count).select_from(VehicleOwnership).where(VehicleOwnership.vehicle_id.in_(vehicles)),
        "staff_stores": sa.select(count).select_from(StaffStore).where(StaffStore.staff_id.in_(staff)),
        "refresh_tokens": sa.select(count).select_from(RefreshToken).where(RefreshToken.staff_id.in_(staff)),
    }
    async with group.runtime.sessionmaker() as session:
        return {name: tuple((await session.execute(q)).one()) for name, q in queries.items()}


@pytest.mark.parametrize("bad", CASES)
async def test_bad_input_is_rejected_and_writes_nothing(client: httpx.AsyncClient, group_m: Group,
                                                        world: dict[str, str], bad: Bad) -> None:
    before = await fingerprint(group_m)
    kwargs: dict[str, Any] = {"headers": group_m.headers(bad.role, "A", **fill(bad.headers, world))}
    if bad.json is not None:
        kwargs["json"] = fill(bad.json, world)
    if bad.content is not None:
        kwargs["content"] = bad.content
    if bad.params is not None:
        kwargs["params"] = fill(bad.params, world)
    resp = await client.request(bad.method, fill(bad.path, world), **kwargs)

    assert resp.status_code == bad.status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    assert problem["status"] == bad.status and problem["type"].startswith(PROBLEM_BASE), problem
    assert problem.get("request_id"), problem
    if bad.field is not None:
        fields = [e["field"] for e in problem.get("errors", [])]
        assert bad.field in fields, problem
        assert all(e["message"] and e["type"] for e in problem["errors"]), problem
    assert await fingerprint(group_m) == before, "a rejected request wrote something"


def test_every_operation_has_a_bad_input_case() -> None:
    """A new endpoint on these routers needs rows in the table above."""
    covered = {(c.values[0].method, c.values[0].path) for c in CASES}

    def matches(method: str, template: str) -> bool:
        parts = template.split("/")
        for m, path in covered:
            other = path.split("/")
            if m == method and len(other) == len(parts) and all(
                    p == o or p.startswith("{") for p, o in zip(parts, other)):
                return True
        return False

    missing = [f"{method} {route.path}" for router in COVERED_ROUTERS for route in router.routes
               if isinstance(route, APIRoute) for method in route.methods if not matches(method, route.path)]
    assert missing == []


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


async def test_the_valid_versions_are_accepted(client: httpx.AsyncClient, group: Group) -> None:
    """Control: complete, valid bodies for the same endpoints go through (the rejections above are specific)."""
    admin = group.headers()
    store = await client.post("/api/v1/stores", headers=admin, json={
        "code": "SZ-NS", "name": "深圳南山店", "timezone": "Asia/Urumqi", "phone": "0755-8888 1234",
        "address": "深圳市南山区", "business_hours": {"mon": ["08:30", "18:00"], "sat": ["09:00", "12:00"]}})
    assert store.status_code == 201, store.text
    assert store.json()["phone"] == "+8675588881234"
    staff = await client.post("/api/v1/staff", headers=admin, json={
        "employee_no": "S-2001", "name": "李雷", "gender": "male", "department": "sales", "education": "bachelor",
        "phone": "13800138000", "roles": ["sales_consultant"], "store_ids": [str(group.store_a)],
        "password": "a-long-initial-password"})
    assert staff.status_code == 201, staff.text
    phone = new_phone()
    customer = await client.post("/api/v1/customers", headers=admin, json={
        "store_id": str(group.store_a), "kind": "person", "name": "韩梅梅", "contact_person": "韩先生",
        "phones": [{"number": phone, "label": "mobile", "primary": True}, {"number": new_phone(), "label": "work"}],
        "id_number": "11010519491231002X", "gender": "female", "birthday": "1985-08-15", "birthday_calendar": "lunar",
        "wedding_anniversary": "2010-10-10", "address": "深圳市福田区", "postcode": "518000", "occupation": "teacher",
        "employer": "某中学", "family": {"size": 3, "children": 1}, "hobbies": ["golf", "photography"],
        "preferred_channel": "wechat", "preferred_contact_time": "weekday evenings", "do_not_call": False,
        "source_code": "R", "source_detail": "referred by an owner", "intent_level": "H", "value_class": "key",
        "vip": True, "tags": ["fleet"], "notes": "prefers afternoon calls", "assigned_sales_id": staff.json()["id"],
        "consents": [{"channel": "sms", "purpose": "service", "granted": True, "source": "contact card"}]})
    assert customer.status_code == 201, customer.text
    body = customer.json()
    assert body["family"] == {"size": 3, "children": 1} and body["hobbies"] == ["golf", "photography"]
    vehicle = await client.post("/api/v1/vehicles", headers=admin, json={
        "customer_id": body["id"], "vin": new_vin(), "plate": "粤B·D12345", "frame_no": "F-1", "engine_no": "E-1",
        "brand": "Volkswagen", "model": "Passat 330TSI", "colour": "white", "interior_colour": "black",
        "purchase_date": "2025-03-01", "delivery_date": "2025-03-08", "purchase_method": "installment",
        "selling_consultant_id": staff.json()["id"], "mileage_km": 0, "insurer": "PICC",
        "insurance_expiry": "2026-03-01", "next_inspection_date": "2031-03-01", "warranty_end": "2028-03-01"})
    assert vehicle.status_code == 201, vehicle.text
    assert vehicle.json()["plate"] == "粤BD12345"
    found = (await client.get("/api/v1/customers", headers=admin, params={
        "phone": phone[3:], "created_from": "2020-01-01T00:00:00+08:00", "intent_level": "H",
        "relationship_type": "owner"})).json()["items"]
    assert [c["id"] for c in found] == [body["id"]]
