"""API shapes of complaints (DOMAIN §10, forms of §4.11): intake, the case actions and what staff read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.validation import IsoDateTime, Phone

Channel = Literal["on_site", "phone_callback", "phone_inbound", "letter", "authority", "wechat", "survey",
                  "consumer_association", "media", "via_sales", "visit", "oem"]
Category = Literal["sales", "parts", "service", "major"]
Problem = Literal["repair_quality", "attitude", "waiting", "price", "other"]
Nature = Literal["media_risk", "consumer_association", "ordinary"]
Severity = Literal["low", "medium", "high", "critical"]
Kind = Literal["grumble", "complaint", "major"]
Status = Literal["ongoing", "in_process", "hold", "closed"]
Feedback = Literal["satisfied", "basically_satisfied", "dissatisfied"]
GoodwillStatus = Literal["none", "pending", "approved", "rejected"]

#: Sub-types per category (DOMAIN §10.3), as stored.
SUBTYPES: dict[str, tuple[str, ...]] = {
    "sales": ("promise_not_kept", "late_delivery", "price_difference", "overstated_performance",
              "overstated_warranty", "sales_attitude"),
    "parts": ("parts_supply", "parts_price", "parts_quality"),
    "service": ("service_quality", "warranty_claim", "product_quality"),
    "major": ("unresolved_by_dealer", "beyond_policy", "expectation_exceeds_value", "goodwill_over_limit",
              "pr_media_legal_risk"),
}
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
CENTS = Decimal("0.01")
Money = Annotated[Decimal, Field(ge=0, le=10_000_000, max_digits=12, decimal_places=2,
                                 description="Yuan, two decimals at most."),
                  AfterValidator(lambda v: v.quantize(CENTS))]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 2000 and 2100")
    return value


#: An instant with a time zone, in this century (far-off years overflow in UTC).
Instant = Annotated[IsoDateTime, AfterValidator(_in_range)]
Reason = Annotated[str, Field(min_length=1, max_length=500, description="Why (kept in the case log).")]


class ComplaintCreate(BaseModel):
    """Intake (客户抱怨受理): whoever takes it becomes its owner (首问负责制) until an explicit transfer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    channel: Channel | None = Field(default=None, description="Where it came in (客户抱怨来源); required unless "
                                                              "`response_id` is given (then `survey`).")
    response_id: uuid.UUID | None = Field(default=None, description="A survey response of your stores this "
                                          "complaint comes from: customer, vehicle and subject are taken from it; "
                                          "one complaint per response.")
    store_id: uuid.UUID | None = Field(default=None, description="Default: the customer's (or response's) store, "
                                                                 "else your only store.")
    customer_id: uuid.UUID | None = Field(default=None, description="A customer of your stores, if known.")
    vehicle_id: uuid.UUID | None = None
    complainant_name: str | None = Field(default=None, min_length=1, max_length=100,
                                         description="Without `customer_id`: who complains (name or phone needed).")
    complainant_phone: Phone | None = None
    about_type: Literal["visit", "delivery"] | None = Field(default=None, description="The repair order or "
                                                                                      "delivery it is about.")
    about_id: uuid.UUID | None = None
    category: Category = Field(description="Sales, parts, service or major (DOMAIN §10.3).")
    subtype: str | None = Field(default=None, max_length=60, description="One of the category's sub-types: "
                                + "; ".join(f"{k}: {', '.join(v)}" for k, v in SUBTYPES.items()))
    problems: list[Problem] = Field(default_factory=list, max_length=5,
                                    description="The form's checkboxes (维修质量, 服务态度, 服务等待, 维修价格, 其他).")
    nature: Nature | None = Field(default=None, description="投诉性质; default from the channel (media → "
                                                            "media_risk; consumer association, authority → "
                                                            "consumer_association; else ordinary).")
    kind: Kind = Field(default="complaint", description="抱怨 (grumble) or 投诉 (complaint); becomes `major` by rule.")
    severity: Severity | None = Field(default=None, description="Computed when left out; a given one can only "
                                                                "raise the computed severity.")
    safety: bool = Field(default=False, description="Injury or safety risk: critical, and the service manager is "
                                                    "told at once (DOMAIN §6.5).")
    description: Text | None = Field(default=None, description="What happened, in the customer's words; required "
                                                               "unless `response_id` is given.")
    demands: str | None = Field(default=None, max_length=2000, description="What the customer asks for (抱怨要求).")
    demanded_amount: Money | None = Field(default=None, description="Compensation asked for, if any: above the "
                                                                    "group's goodwill limit the case is major.")
    oem_case_no: str | None = Field(default=None, max_length=40, description="The manufacturer's CAC case number.")
    promised_reply_at: Instant | None = Field(default=None, description="Reply time promised to the customer.")

    @field_validator("problems")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each problem at most once")
        return v


class RespondWrite(BaseModel):
    """A contact with the customer; the first one records the first response (安抚情绪, 告知反馈时间)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    body: Text = Field(description="What was said or done.")
    promised_reply_at: Instant | None = Field(default=None, description="The reply time told to the customer.")


class NoteWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    body: Text
    investigation: str | None = Field(default=None, max_length=4000,
                                      description="Sets the case's investigation result (调查结果): its owner or a "
                                                  "manager only.")


class TransferWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to_id: uuid.UUID = Field(description="An active staff member of the case's store.")
    reason: Reason


class StatusWrite(BaseModel):
    """On-going (no conclusion yet), In process (a conclusion, being carried out), Hold (冷处理: pauses the SLA
    watch). Closed only through `close`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: Literal["ongoing", "in_process", "hold"]
    reason: str | None = Field(default=None, min_length=1, max_length=500, description="Required for a hold.")


class SeverityWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    severity: Severity = Field(description="Higher than the current one; the SLA due times shorten accordingly.")
    safety: bool | None = Field(default=None, description="Mark as a safety case (critical).")
    reason: Reason


class Remedy(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: str = Field(min_length=1, max_length=60, examples=["方案一"])
    description: str = Field(min_length=1, max_length=1000, examples=["贵宾卡:工时9折,配件8.5折;免费洗车"])
    goodwill_amount: Money = Field(default=Decimal(0), description="Goodwill this package costs (yuan).")


class RemediesWrite(BaseModel):
    """The packages offered to the customer (期望值四象限法: several solutions to choose from, DOMAIN §10.5)."""

    model_config = ConfigDict(extra="forbid")
    remedies: list[Remedy] = Field(min_length=1, max_length=6)

    @field_validator("remedies")
    @classmethod
    def _labels(cls, v: list[Remedy]) -> list[Remedy]:
        if len({r.label for r in v}) != len(v):
            raise ValueError("labels must differ")
        return v


class GoodwillWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    amount: Money = Field(description="Goodwill to grant; above the limit it waits for a manager's approval.")
    reason: Reason


class DecisionWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: str | None = Field(default=None, min_length=1, max_length=500)


class RejectWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Reason


class ResolveWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    remedy: str = Field(min_length=1, max_length=500, description="The remedy the customer chose and that was "
                                                                  "carried out: an offered package's label, or "
                                                                  "free text.")
    goodwill_amount: Money = Field(default=Decimal(0), description="For an offered package: its goodwill (the "
                                   "default; another amount is refused). Above the group's limit it must have been "
                                   "approved (POST …/goodwill first).")
    investigation: str | None = Field(default=None, max_length=4000, description="调查结果, if not noted yet.")


class CloseWrite(BaseModel):
    """Closing (结案, R-PERM-06): root cause, action taken, and the customer's feedback; the closer (a manager)
    signs off."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    root_cause: Text = Field(description="抱怨原因分析.")
    action_taken: Text = Field(description="改进措施.")
    staff_verdict: str | None = Field(default=None, max_length=2000, description="对被投诉者的意见.")
    feedback_result: Feedback = Field(description="The customer's satisfaction with the result.")
    feedback_speed: Feedback = Field(description="The customer's satisfaction with the speed.")
    note: str | None = Field(default=None, max_length=2000)


class EscalateWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Reason
    to_level: int | None = Field(default=None, ge=1, le=3, description="Default: one level up. 2 reaches the "
                                                                       "sales manager for sales cases, else the "
                                                                       "service manager (urgent or safety).")


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str = Field(description="opened, response, note, transfer, status, severity, remedies, goodwill, "
                                  "resolved, closed, escalation.")
    author_id: uuid.UUID | None = Field(description="null: the SLA watch.")
    body: str | None
    data: dict[str, Any]
    created_at: datetime


class ComplaintRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    store_id: uuid.UUID
    number: str = Field(examples=["C202611-0007"])
    customer_id: uuid.UUID | None
    vehicle_id: uuid.UUID | None
    complainant_name: str | None = Field(description="Masked for roles without personal-data access.")
    complainant_phone: str | None = Field(description="Masked for roles without personal-data access.")
    channel: str
    kind: Kind
    category: Category
    subtype: str | None
    problems: list[str]
    nature: Nature
    severity: Severity
    safety: bool
    status: Status
    description: str
    demands: str | None
    demanded_amount: Decimal | None
    oem_case_no: str | None
    response_id: uuid.UUID | None
    about_type: str | None
    about_id: uuid.UUID | None
    owner_id: uuid.UUID | None = Field(description="First-contact owner (首问负责制) until transferred.")
    opened_by: uuid.UUID | None
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    first_responded_at: datetime | None
    promised_reply_at: datetime | None
    escalation_level: int = Field(description="0 none; 1 CS supervisor; 2 the sales manager (sales cases) or "
                                              "the service manager, with the CS director for major cases; 3 "
                                              "director / GM.")
    escalated_at: datetime | None
    escalate_at: datetime | None = Field(description="When the SLA watch looks next (null: closed, on hold or at "
                                                     "the top).")
    closing_due: datetime | None = Field(description="Once resolved: close it by then (the resolution deadline, "
                                                     "at least 48 hours after the resolution) or it escalates.")
    overdue: bool = Field(default=False, description="First response, resolution or (once resolved) closing is "
                                                     "past due (not on hold).")
    remedies: list[dict[str, Any]]
    chosen_remedy: str | None
    goodwill_amount: Decimal
    goodwill_status: GoodwillStatus
    goodwill_requested_by: uuid.UUID | None
    goodwill_decided_by: uuid.UUID | None
    resolved_at: datetime | None
    investigation: str | None
    root_cause: str | None
    action_taken: str | None
    staff_verdict: str | None
    feedback_result: Feedback | None
    feedback_speed: Feedback | None
    signed_off_by: uuid.UUID | None
    closed_at: datetime | None
    held_from: str | None
    version: int


class ComplaintDetail(ComplaintRead):
    entries: list[EntryRead] = Field(default_factory=list, description="The case log, oldest first.")
