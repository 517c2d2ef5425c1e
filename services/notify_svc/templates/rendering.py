"""The one renderer: a template and the sender's variables in, the text and provider parameters out.

A template body holds ``{name}`` placeholders (``{{`` and ``}}`` are literal braces) and nothing else: no
attribute, index, conversion or format spec, so a body can never reach into the values it is given
(``{x.__class__}`` is refused when the template is saved, and again here if a row was written around the API).
Variables are typed; each value is checked and formatted for the reader when the message is rendered, and a bad
one raises :class:`TemplateVariableError` naming it (the dispatcher records the message as suppressed with reason
``template_variables``; the preview API answers 422 naming the variable).

Bodies are parsed once per (template id, version) and kept in a small LRU cache: the dispatcher renders
thousands of messages a second from a handful of templates.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify_svc.models import Template
from shared.pii import mask_number
from shared.validation import normalize_phone, normalize_plate

#: Opt-out wording Chinese carriers and providers accept in a marketing SMS; one must appear in its body.
OPT_OUT_MARKERS = ("拒收请回复R", "回T退订", "退订回T", "回TD退订")
VARIABLE_TYPES = ("text", "int", "date", "datetime", "plate", "phone", "money", "list", "url")
#: Aliyun accepts at most 35 characters in an ordinary SMS template variable (links have their own rule).
SMS_VARIABLE_LIMIT = 35
CHANNELS = ("sms", "wechat", "wecom", "console")
PROVIDERS = ("aliyun", "tencent", "wechat", "wecom")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
#: A WeChat data key: its keyword type and a number (``thing1``, ``car_number3``), or a classic key (``first``).
WECHAT_FIELD = re.compile(r"^[a-z][a-z_]{0,30}?[0-9]{0,3}$")
#: WeChat's length limits per keyword type (characters); ``thing`` is shortened with an ellipsis, the others
#: carry identifiers that must not be cut and fail instead.
WECHAT_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "car_number": 8, "character_string": 32, "number": 32,
                 "phone_number": 17, "letter": 32, "symbol": 5}
LIST_SEPARATOR = "、"
CACHE_SIZE = 4096

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_INT = re.compile(r"^[+-]?\d{1,18}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TemplateVariableError(ValueError):
    """A variable the template cannot be rendered with: missing, unknown, of the wrong type, or too long."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TemplateDefinitionError(ValueError):
    """A template that may not be saved; ``field`` is the template's field (``body``, ``variables.2.type`` ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Rendered:
    """What the provider adapters need, for every provider at once (the dispatcher picks one)."""

    text: str
    #: Every declared variable by name, formatted (Aliyun ``TemplateParam``); an absent optional one is "".
    params: dict[str, str]
    #: The values in ``provider_params["tencent"]`` order (Tencent ``TemplateParamSet``).
    ordered_params: list[str]
    #: WeChat data per field (``provider_params["wechat"]``), formatted and sized for the field's keyword type.
    fields: dict[str, str]
    template_id: uuid.UUID | None = None
    template_key: str = ""
    template_version: int = 0
    channel: str = ""
    purpose: str = "service"
    sign_name: str | None = None
    codes: Mapping[str, str] = field(default_factory=dict)

    def template_code_for(self, provider: str) -> str | None:
        """The provider's template id (Aliyun ``SMS_…``, Tencent numeric id, WeChat template id), if filled in."""
        code = self.codes.get(provider)
        return str(code) if code else None


# --- parsing ---------------------------------------------------------------------------------------------------


def parse_body(body: str) -> tuple[tuple[str, str | None], ...]:
    """The body as ``(literal, placeholder name or None)`` pairs; raises ValueError naming the bad placeholder."""
    parts: list[tuple[str, str | None]] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(body):
        literal.append(body[pos:m.start()])
        pos = m.end()
        token = m.group(0)
        if token == "{{":
            literal.append("{")
        elif token == "}}":
            literal.append("}")
        elif m.group(1) is None:
            raise ValueError(f"unbalanced {token!r} at character {m.start()}: write {token * 2} for a literal brace")
        else:
            name = m.group(1)
            if not NAME.match(name):
                raise ValueError(f"{{{name}}} is not a placeholder: write {{name}} with a plain variable name "
                                 "(letters, digits, _; no attributes, indexes or formats)")
            parts.append(("".join(literal), name))
            literal = []
    literal.append(body[pos:])
    tail = "".join(literal)
    if tail or not parts:
        parts.append((tail, None))
    return tuple(parts)


def placeholders(body: str) -> list[str]:
    """The placeholder names of a body in order of first use (raises ValueError on a bad placeholder)."""
    seen: dict[str, None] = {}
    for _, name in parse_body(body):
        if name is not None:
            seen.setdefault(name, None)
    return list(seen)


# --- typed values ----------------------------------------------------------------------------------------------


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {type(raw).__name__}")
    value = raw.strip()
    if _CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError(f"expected a whole number, got {type(raw).__name__}")
    if isinstance(raw, str):
        if not _INT.match(raw.strip()):
            raise ValueError("expected a whole number")
        return int(raw.strip())
    return raw


def _date(raw: Any) -> date:
    message = "expected an ISO 8601 date such as 2026-05-01"
    if isinstance(raw, datetime) or not isinstance(raw, (date, str)):
        raise ValueError(message)
    if isinstance(raw, date):
        return raw
    if len(raw.strip()) != 10:
        raise ValueError(message)
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(message) from None


def _datetime(raw: Any) -> datetime:
    if isinstance(raw, datetime):
        return raw
    message = "expected an ISO 8601 date-time such as 2026-05-01T10:30:00+08:00"
    if not isinstance(raw, str) or len(raw.strip()) <= 10:
        raise ValueError(message)
    try:
        return datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(message) from None


def _plate(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a Chinese licence plate (e.g. 粤B12345)")
    return normalize_plate(raw)


def _phone(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a phone number")
    return normalize_phone(raw)


def _money(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise ValueError("expected an amount such as 1280 or 1280.50")
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else str(raw))
    except InvalidOperation:
        raise ValueError("expected an amount such as 1280 or 1280.50") from None
    if not value.is_finite() or abs(value) >= Decimal(10) ** 12:
        raise ValueError("expected an amount such as 1280 or 1280.50")
    return value


def _list(raw: Any) -> list[str]:
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"expected a list of texts, got {type(raw).__name__}")
    items = []
    for item in raw:
        if not isinstance(item, str):
            raise ValueError("expected a list of texts")
        item = item.strip()
        if _CONTROL.search(item) or LIST_SEPARATOR in item:
            raise ValueError(f"list items must not contain control characters or {LIST_SEPARATOR!r}")
        if item:
            items.append(item)
    return items


def _url(raw: Any) -> str:
    message = "expected an http(s) link such as https://example.cn/s/abc"
    if not isinstance(raw, str):
        raise ValueError(message)
    value = raw.strip()
    if _CONTROL.search(value) or " " in value:
        raise ValueError(message)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(message) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(message)
    return value


def _show_money(value: Decimal) -> str:
    cents = value.quantize(Decimal("0.01"))
    return f"{int(cents)}元" if cents == cents.to_integral_value() else f"{cents}元"


def _show_datetime(value: datetime, tz: tzinfo | None) -> str:
    if tz is not None and value.tzinfo is not None:
        value = value.astimezone(tz)
    return f"{value.month}月{value.day}日 {value:%H:%M}"


_PARSE: dict[str, Callable[[Any], Any]] = {
    "text": _text, "int": _int, "date": _date, "datetime": _datetime, "plate": _plate, "phone": _phone,
    "money": _money, "list": _list, "url": _url}


def _show(kind: str, value: Any, tz: tzinfo | None) -> str:
    if kind == "date":
        return f"{value.month}月{value.day}日"
    if kind == "datetime":
        return _show_datetime(value, tz)
    if kind == "phone":
        return mask_number(value)
    if kind == "money":
        return _show_money(value)
    if kind == "list":
        return LIST_SEPARATOR.join(value)
    return str(value)


def _shorten_list(items: list[str], limit: int) -> str | None:
    """As many items as fit with "等" after them (a long list of declined repairs is summarised, not lost)."""
    for n in range(len(items) - 1, 0, -1):
        text = LIST_SEPARATOR.join(items[:n]) + "等"
        if len(text) <= limit:
            return text
    return None


# --- compiled templates ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    kind: str
    required: bool
    max_length: int | None


@dataclass(frozen=True, slots=True)
class Compiled:
    parts: tuple[tuple[str, str | None], ...]
    specs: tuple[Spec, ...]
    tencent: tuple[str, ...]
    wechat: tuple[tuple[str, str], ...]


def _specs(channel: str, variables: Any) -> tuple[Spec, ...]:
    specs = []
    for i, raw in enumerate(variables or []):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise TemplateVariableError(f"variables.{i}", "the template's variable list is malformed")
        name, kind = raw["name"], raw.get("type", "text")
        if kind not in _PARSE:
            raise TemplateVariableError(name, f"the template declares an unknown type {kind!r}")
        limit = raw.get("max_length")
        if limit is None and channel == "sms" and kind != "url":
            limit = SMS_VARIABLE_LIMIT
        specs.append(Spec(name, kind, bool(raw.get("required", True)), limit))
    return tuple(specs)


def compile_template(template: Template) -> Compiled:
    """Parse and check a stored template for rendering (raises :class:`TemplateVariableError`)."""
    try:
        parts = parse_body(template.body)
    except ValueError as exc:
        raise TemplateVariableError("body", str(exc)) from None
    specs = _specs(template.channel, template.variables)
    declared = {s.name for s in specs}
    for _, name in parts:
        if name is not None and name not in declared:
            raise TemplateVariableError(name, f"the body uses {{{name}}}, which the template does not declare")
    params = template.provider_params or {}
    tencent = tuple(params.get("tencent") or ())
    wechat = tuple((params.get("wechat") or {}).items())
    for name in (*tencent, *(n for _, n in wechat)):
        if name not in declared:
            raise TemplateVariableError(name, "the provider parameters name a variable the template does not declare")
    return Compiled(parts, specs, tencent, wechat)


_cache: OrderedDict[tuple[uuid.UUID, int], Compiled | TemplateVariableError] = OrderedDict()


def _compiled(template: Template) -> Compiled:
    if template.id is None:
        return compile_template(template)
    key = (template.id, template.version)
    found = _cache.get(key)
    if found is None:
        try:
            found = compile_template(template)
        except TemplateVariableError as exc:
            found = exc
        _cache[key] = found
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    if isinstance(found, TemplateVariableError):
        raise TemplateVariableError(found.field, found.message)
    return found


def _absent(raw: Any) -> bool:
    """None, blank text and empty lists count as not given (senders drop or blank what they do not know)."""
    return raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, (list, tuple)) and not raw)


def _wechat_value(keyword: str, kind: str, value: Any, shown: str, name: str, tz: tzinfo | None) -> str:
    """WeChat's time and date keywords want the year (2026年5月1日); its keyword types have length limits."""
    if kind == "date" and keyword in ("time", "date"):
        shown = f"{value.year}年{value.month}月{value.day}日"
    elif kind == "datetime" and keyword in ("time", "date"):
        if tz is not None and value.tzinfo is not None:
            value = value.astimezone(tz)
        shown = f"{value.year}年{value.month}月{value.day}日 {value:%H:%M}"
    limit = WECHAT_LIMITS.get(keyword)
    if limit is not None and len(shown) > limit:
        if keyword != "thing":
            raise TemplateVariableError(name, f"longer than WeChat's {limit} characters for a {keyword} field")
        shown = shown[:limit - 1] + "…"
    return shown


def render(template: Template, variables: Mapping[str, Any], *, tz: tzinfo | None = None) -> Rendered:
    """The template rendered with ``variables`` (extra variables are ignored: senders pass what they know).

    ``tz``: date-times with a zone are shown in it (the store's zone); without, as given.
    Raises :class:`TemplateVariableError` naming the variable that is missing, unknown, mistyped or too long.
    """
    compiled = _compiled(template)
    shown: dict[str, str] = {}
    typed: dict[str, tuple[str, Any]] = {}
    for spec in compiled.specs:
        raw = variables.get(spec.name)
        value = None
        if not _absent(raw):
            try:
                value = _PARSE[spec.kind](raw)
            except ValueError as exc:
                raise TemplateVariableError(spec.name, str(exc)) from None
        if value is None or (spec.kind == "list" and not value):
            if spec.required:
                raise TemplateVariableError(spec.name, "required")
            shown[spec.name] = ""
            continue
        text = _show(spec.kind, value, tz)
        if spec.max_length is not None and len(text) > spec.max_length:
            short = _shorten_list(value, spec.max_length) if spec.kind == "list" else None
            if short is None:
                raise TemplateVariableError(spec.name, f"{len(text)} characters, more than the template's "
                                                       f"{spec.max_length}")
            text = short
        shown[spec.name] = text
        typed[spec.name] = (spec.kind, value)
    body = "".join(literal + shown[name] if name is not None else literal for literal, name in compiled.parts)
    fields = {}
    for key, name in compiled.wechat:
        kind, value = typed.get(name, ("text", ""))
        fields[key] = _wechat_value(key.rstrip("0123456789"), kind, value, shown[name], name, tz)
    return Rendered(text=body, params=shown, ordered_params=[shown[n] for n in compiled.tencent], fields=fields,
                    template_id=template.id, template_key=template.key, template_version=template.version,
                    channel=template.channel, purpose=template.purpose, sign_name=template.sign_name,
                    codes=dict(template.provider_codes or {}))


def sms_length(text: str, sign_name: str | None) -> tuple[int, int]:
    """Characters as the carrier counts them (``【签名】`` included) and the SMS parts billed (70, then 67 each)."""
    chars = len(text) + (len(sign_name) + 2 if sign_name else 0)
    return chars, 1 if chars <= 70 else math.ceil(chars / 67)


# --- checking a template before it is saved --------------------------------------------------------------------


def check_definition(*, channel: str, purpose: str, body: str, variables: list[Mapping[str, Any]],
                     provider_params: Mapping[str, Any]) -> None:
    """Everything a save must get right, else :class:`TemplateDefinitionError` naming the template's field:
    placeholders are plain names and all declared; variable names unique, types known, SMS lengths within the
    provider's limit; a marketing SMS carries an opt-out phrase; provider parameters name declared variables."""
    try:
        used = placeholders(body)
    except ValueError as exc:
        raise TemplateDefinitionError("body", str(exc)) from None
    declared: dict[str, Mapping[str, Any]] = {}
    for i, var in enumerate(variables):
        name = var.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise TemplateDefinitionError(f"variables.{i}.name", "a variable name is a letter then letters, digits "
                                                                 "or _ (at most 40)")
        if name in declared:
            raise TemplateDefinitionError(f"variables.{i}.name", f"{name!r} is declared twice")
        kind = var.get("type", "text")
        if kind not in VARIABLE_TYPES:
            raise TemplateDefinitionError(f"variables.{i}.type", f"unknown type {kind!r}; one of "
                                                                 f"{', '.join(VARIABLE_TYPES)}")
        limit = var.get("max_length")
        if channel == "sms" and kind != "url" and limit is not None and limit > SMS_VARIABLE_LIMIT:
            raise TemplateDefinitionError(f"variables.{i}.max_length", f"SMS providers accept at most "
                                                                       f"{SMS_VARIABLE_LIMIT} characters per variable")
        declared[name] = var
    for name in used:
        if name not in declared:
            raise TemplateDefinitionError("body", f"the placeholder {{{name}}} is not declared in variables")
    if channel == "sms" and purpose == "marketing" and not any(m in body for m in OPT_OUT_MARKERS):
        raise TemplateDefinitionError("body", "a marketing SMS must tell the reader how to opt out: include one of "
                                              + ", ".join(OPT_OUT_MARKERS))
    for i, name in enumerate(provider_params.get("tencent") or []):
        if name not in declared:
            raise TemplateDefinitionError(f"provider_params.tencent.{i}", f"{name!r} is not a declared variable")
    for key, name in (provider_params.get("wechat") or {}).items():
        if not WECHAT_FIELD.match(key):
            raise TemplateDefinitionError(f"provider_params.wechat.{key}", "not a WeChat data key (e.g. thing1)")
        if name not in declared:
            raise TemplateDefinitionError(f"provider_params.wechat.{key}", f"{name!r} is not a declared variable")


# --- which template a message uses -----------------------------------------------------------------------------


async def resolve_template(session: AsyncSession, tenant_id: uuid.UUID, store_id: uuid.UUID | None, key: str,
                           channel: str, locale: str = "zh-CN") -> Template | None:
    """The store's own template for (key, channel, locale) if it has one, else the dealer group's; any status (the
    caller decides what a draft or disabled template means)."""
    stores = [Template.store_id.is_(None)] if store_id is None else \
        [sa.or_(Template.store_id == store_id, Template.store_id.is_(None))]
    stmt = (sa.select(Template)
            .where(Template.tenant_id == tenant_id, Template.key == key, Template.channel == channel,
                   Template.locale == locale, *stores)
            .order_by(Template.store_id.is_(None)).limit(1))
    return await session.scalar(stmt)
