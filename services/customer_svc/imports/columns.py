"""File headers (English or Chinese, as Excel exports them) onto record fields, and validation errors onto fields."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from customer_svc.imports.records import RECORDS
from shared.errors import named_field

#: Chinese (and common English) spellings of each field; a field's own name is always accepted.
ALIASES: dict[str, tuple[str, ...]] = {
    "dealer_group": ("经销商集团", "集团", "集团编码", "tenant"),
    "store_code": ("门店编码", "门店代码", "经销商代码", "店代码", "store"),
    "store_id": ("门店id",),
    "external_id": ("客户编号", "客户id", "外部编号", "customer_id", "工单id", "维修工单id", "repair_order_id"),
    "name": ("姓名", "客户姓名", "客户名称", "customer_name"),
    "phone": ("手机", "手机号", "手机号码", "联系电话", "电话", "mobile", "mobile_phone", "phone_number"),
    # A second number's column is often the first one's name with a note (手机(备用), 联系电话2): whole, it names
    # phone2; only a note naming no field is dropped (see field_of_header).
    "phone2": ("其他电话", "phone_2", "mobile2", "secondary_phone", "other_phone",
               *(f"{a}{b}" if first else f"{b}{a}" for a in ("手机", "手机号", "手机号码", "联系电话", "电话")
                 for first, b in ((True, "备用"), (True, "其他"), (True, "2"), (True, "二"), (False, "备用"),
                                  (False, "其他")))),
    "kind": ("客户类型", "customer_type"),
    "gender": ("性别", "sex"),
    "birthday": ("生日", "出生日期", "birth_date"),
    "id_number": ("身份证号", "身份证", "证件号码"),
    "address": ("地址", "联系地址", "住址"),
    "wechat_openid": ("微信openid", "openid"),
    "customer_no": ("客户档案号", "档案号", "dms客户号"),
    "relationship": ("客户关系", "客户状态"),
    "sales_consultant_no": ("销售顾问工号", "销售顾问编号", "consultant_no"),
    "since": ("建档日期", "建档时间", "created", "created_date"),
    "vin": ("车架号", "vin码", "车辆识别代号", "车辆识别号"),
    "plate": ("车牌", "车牌号", "车牌号码", "license_plate"),
    "brand": ("品牌",),
    "model": ("车型",),
    "colour": ("颜色", "车身颜色", "color"),
    "purchase_date": ("购车日期", "购买日期", "开票日期"),
    "delivery_date": ("交车日期", "交付日期", "提车日期"),
    "mileage_km": ("里程", "行驶里程", "公里数", "进厂里程", "mileage"),
    "insurance_expiry": ("保险到期日", "保险到期日期", "商业险到期日"),
    "next_inspection_date": ("年检日期", "下次年检日期", "年审日期"),
    "warranty_end": ("质保到期日", "保修到期日"),
    "visit_type": ("维修类型", "服务类型", "工单类型"),
    "completed_at": ("结算时间", "结算日期", "完工时间", "settled_at"),
    "ro_number": ("工单号", "维修工单号", "repair_order_no"),
    "advisor_no": ("服务顾问工号", "服务顾问编号", "sa_no"),
    "symptoms": ("故障现象", "故障描述"),
}


def _norm(header: str) -> str:
    """A header as looked up: full-width letters and brackets as ASCII (NFKC), the "*" templates put on required
    columns, spaces, underscores, dashes, brackets and colons dropped, lower case."""
    return re.sub(r"[\s_\-():*]+", "", unicodedata.normalize("NFKC", header).lstrip("\ufeff")).lower()


_BRACKETED = re.compile(r"[(（][^()（）]*[)）]")


@lru_cache(maxsize=1024)  # JSON Lines repeat their keys on every line
def field_of_header(header: str) -> str | None:
    """The field a header names: by its whole text, else without what it adds in brackets (车架号(VIN))."""
    return _LOOKUP.get(_norm(header)) or _LOOKUP.get(_norm(_BRACKETED.sub("", header)))


_LOOKUP: dict[str, str] = {}
for _field, _names in ALIASES.items():
    for _name in (_field, *_names):
        _LOOKUP.setdefault(_norm(_name), _field)


def required_fields(kind: str) -> list[str]:
    return [n for n, f in RECORDS[kind].model_fields.items() if f.is_required()]


def map_headers(kind: str, headers: list[str]) -> tuple[list[str | None], list[str]]:
    """Each header's field (None: ignored) and the warnings worth telling the uploader (unknown or repeated
    columns). Raises ``ValueError`` naming the required fields no header maps to."""
    known = RECORDS[kind].model_fields
    fields: list[str | None] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for header in headers:
        field = field_of_header(header)
        if field is None or field not in known:
            if header.strip():  # Excel's empty trailing columns are not worth a warning each
                warnings.append(f"column {header.strip()!r} is not used for {kind}")
            field = None
        elif field in seen:
            warnings.append(f"column {header.strip()!r} repeats {field}; the first one is used")
            field = None
        else:
            seen.add(field)
        fields.append(field)
    if kind == "visits" and "external_id" not in seen and "ro_number" in seen:
        seen.add("external_id")  # a DMS export keyed by its repair-order number (工单号): that is the id
    missing = [f for f in required_fields(kind) if f not in seen]
    if missing:
        raise ValueError(f"missing column(s) for {kind}: {', '.join(missing)}")
    return fields, warnings


def keyed(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """A repair order without its own id column is keyed by its number."""
    if kind == "visits" and "external_id" not in values and values.get("ro_number"):
        values["external_id"] = values["ro_number"]
    return values


def fields_of(kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A JSON Lines object's keys onto fields (Chinese keys allowed); unknown keys are reported, not fatal."""
    known = RECORDS[kind].model_fields
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in obj.items():
        field = field_of_header(str(key))
        if field is None or field not in known:
            unknown.append(str(key))
        else:
            out.setdefault(field, value)
    return out, unknown


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The field and message of a record's first validation error."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int))
    field, message = named_field(loc, str(err.get("msg", "invalid")))
    return field or "row", message
