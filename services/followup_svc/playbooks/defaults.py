"""The rules every dealer group starts with: DOMAIN.md §6, taking §17.1's proposal where the seeds disagree.

Each entry is ``key -> definition``; a group edits them through the API (new versions), a store overrides.
"""

from __future__ import annotations

from typing import Any

from followup_svc.playbooks.schemas import RuleDefinition


def _task(title: str, role: str, assignee: str = "role", kind: str = "call", instructions: str | None = None) -> dict:
    return {"kind": "task", "task_kind": kind, "title": title, "role": role, "assignee": assignee,
            "instructions": instructions}


def _msg(template: str, channels: tuple[str, ...] = ("wechat", "sms")) -> dict:
    return {"kind": "message", "template": template, "channels": list(channels)}


SALES = "sales_consultant"
ADVISOR = "service_advisor"
CS = "cs_agent"
NIGHT_AND_MORNING = {"local_time": "10:00"}
RECOVERY = ("A low survey score (reasons in the task context). §9.4/§8.3: call at once, apologise and ask what went "
            "wrong; record it truthfully in the archive; agree a solution with the department responsible and "
            "record it; if no answer is possible now, promise a reply by a set deadline. Open a complaint (§10) "
            "when the customer complains.")

_RAW: dict[str, dict[str, Any]] = {
    # --- prospects (§6.1, §5.2) -----------------------------------------------------------------------
    "prospect_thanks_sms": {
        "name": "T-05 展厅/来电后30分钟感谢短信", "trigger": "customer.created",
        "conditions": {"relationships": ["prospect"]},
        "schedule": {"offsets": [{"minutes": 30}], "stale_after": {"hours": 12}},
        "action": _msg("showroom_thanks", ("sms",))},
    "prospect_recap_message": {
        "name": "T-06 24小时内回顾信息(推荐车型、关注点)", "trigger": "customer.created",
        "conditions": {"relationships": ["prospect"]},
        "schedule": {"offsets": [{"hours": 20}], "stale_after": {"days": 2}},
        "action": _msg("visit_recap")},
    "prospect_intent_confirm": {
        "name": "T-07 24小时内回访确认意向级别", "trigger": "customer.created",
        "conditions": {"relationships": ["prospect"]},
        "schedule": {"offsets": [{"hours": 4}], "working_days_only": False, "stale_after": {"days": 3}},
        "action": _task("24小时意向确认回访", SALES, "sales_consultant",
                        instructions="Confirm the intent level (H/A/B/C) and agree the next contact (T-14)."),
        "sla_hours": 20, "priority": 2},
    **{f"prospect_cadence_{lvl.lower()}": {
        "name": f"T-08 {lvl}级客户跟踪(每{label})", "trigger": "customer.intent",
        "conditions": {"intent_levels": [lvl]},
        "schedule": {"offsets": [every], "repeat": {"every": every, "count": 60}, "local_time": "10:00",
                     "stale_after": {"days": 2}},
        "action": _task(f"{lvl}级意向客户跟踪", SALES, "sales_consultant"),
        "sla_hours": 24 if lvl in "HA" else 48, "priority": 2 if lvl in "HAO" else 3}
        for lvl, every, label in (("O", {"days": 7}, "周"), ("H", {"days": 2}, "2天"), ("A", {"days": 4}, "4天"),
                                  ("B", {"days": 7}, "周"), ("C", {"days": 15}, "半月"))},
    # --- delivery and owner care (§6.2, §17.1: 3 h + day 3 + day 7 + half month + 1 month, then monthly) ----
    "post_delivery_call_3h": {
        "name": "T-21 提车3小时安全到家关怀电话", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"hours": 3}], "working_days_only": False, "stale_after": {"days": 2}},
        "action": _task("提车3小时关怀电话", SALES, "sales_consultant",
                        instructions="Arrived home safely? Usage tips. Then the purchase thank-you SMS goes out."),
        "sla_hours": 8, "priority": 1},
    "post_delivery_thanks_sms": {
        "name": "T-21 购车感谢短信", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"hours": 4}], "stale_after": {"days": 3}},
        "action": _msg("purchase_thanks")},
    "post_delivery_calls": {
        "name": "T-22/T-26/T-28/T-29 提车3天、1周、半月、1个月回访", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"days": 3}, {"days": 7}, {"days": 15}, {"months": 1}], "local_time": "10:00",
                     "stale_after": {"days": 14}, "min_gap_days": 2},
        "action": _task("新车交付回访", SALES, "sales_consultant",
                        instructions="Day 3: features, daily checks, plate booking. Week 1: script §8.3, referral "
                                     "ask. Half month: voucher rules. Month 1: remind the first maintenance."),
        "sla_hours": 48, "priority": 2},
    "post_delivery_survey": {
        "name": "交车满意度调查", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"days": 7}], "local_time": "11:00", "stale_after": {"days": 14}},
        "action": {"kind": "survey", "survey": "sales_satisfaction", "channels": ["wechat", "sms"]}},
    "owner_monthly_care": {
        "name": "T-31 每月关怀(轻触达)", "trigger": "vehicle.delivered", "purpose": "marketing",
        "schedule": {"offsets": [{"months": 2}], "repeat": {"every": {"months": 1}, "count": 58},
                     "local_time": "10:30", "stale_after": {"days": 7}, "holiday_peak": "defer"},
        "action": _msg("monthly_care")},
    "first_maintenance_notice": {
        "name": "T-33 约3个月首保通知电话", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"months": 3}], "local_time": "10:00", "stale_after": {"days": 30}},
        "action": _task("首保通知", ADVISOR, "service_advisor"), "sla_hours": 72},
    "owner_quarterly_visit": {
        "name": "T-34 每季度电话/拜访", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"months": 6}], "repeat": {"every": {"months": 3}, "count": 18},
                     "local_time": "10:00", "stale_after": {"days": 30}, "min_gap_days": 7},
        "action": _task("保有客户季度关怀", SALES, "sales_consultant"), "sla_hours": 120, "priority": 4},
    "owner_anniversary_calls": {
        "name": "T-35/T-36 交车第12、24、36、48、60个月", "trigger": "vehicle.delivered",
        "schedule": {"offsets": [{"months": m} for m in (12, 24, 36, 48, 60)], "local_time": "10:00",
                     "stale_after": {"days": 30}},
        "action": _task("购车周年回访", SALES, "sales_consultant"), "sla_hours": 120, "priority": 3},
    # --- service side (§6.3) ----------------------------------------------------------------------
    "service_callback": {
        "name": "T-53 维修保养后一周内回访", "trigger": "visit.completed",
        "conditions": {"visit_types": ["first_maintenance", "maintenance"]},
        "schedule": {"offsets": [{"days": 2}], "spread_days": 3, "local_time": "10:00", "stale_after": {"days": 10}},
        "action": _task("保养后回访", ADVISOR, "service_advisor",
                        instructions="Script §8.4: driving condition, satisfaction, new needs and appointment."),
        "sla_hours": 96, "priority": 2},
    "major_overhaul_callbacks": {
        "name": "T-54 总成大修回访(3天、半月、2个月)", "trigger": "visit.completed",
        "conditions": {"visit_types": ["major_overhaul"]},
        "schedule": {"offsets": [{"days": 3}, {"days": 15}, {"months": 2}], "local_time": "10:00",
                     "stale_after": {"days": 10}},
        "action": _task("总成大修回访", ADVISOR, "service_advisor",
                        instructions="Engine or gearbox overhaul: remind the usage precautions."),
        "sla_hours": 48, "priority": 2},
    "minor_repair_callback": {
        "name": "T-55 小修一周内回访(抽样≥30%)", "trigger": "visit.completed",
        "conditions": {"visit_types": ["minor_repair"], "sample_percent": 35},
        "schedule": {"offsets": [{"days": 2}], "spread_days": 4, "local_time": "10:00", "stale_after": {"days": 10}},
        "action": _task("小修回访", CS), "sla_hours": 96, "priority": 3},
    "rework_callback": {
        "name": "T-56 返修回访", "trigger": "visit.completed", "conditions": {"visit_types": ["rework"]},
        "schedule": {"offsets": [{"days": 1}], "local_time": "10:00", "stale_after": {"days": 7}},
        "action": _task("返修回访", ADVISOR, "service_advisor"), "sla_hours": 24, "priority": 1},
    "service_survey": {
        "name": "维修满意度调查", "trigger": "visit.completed",
        "conditions": {"visit_types": ["first_maintenance", "maintenance", "major_overhaul", "rework"]},
        "schedule": {"offsets": [{"days": 1}], "local_time": "11:00", "stale_after": {"days": 10}},
        "action": {"kind": "survey", "survey": "service_satisfaction", "channels": ["wechat", "sms"]}},
    "service_thanks": {
        "name": "维修后感谢短信", "trigger": "visit.completed",
        "schedule": {"offsets": [{"hours": 2}], "stale_after": {"days": 1}},
        "action": _msg("service_thanks", ("sms",))},
    "maintenance_reminder": {
        "name": "T-50/T-51/T-57 保养提醒(里程或时间,先到为准)", "trigger": "vehicle.maintenance_due",
        "conditions": {"maintenance": {}},
        "schedule": {"offsets": [{}], "local_time": "10:00", "stale_after": {"days": 30}},
        "action": _msg("maintenance_reminder")},
    "maintenance_booking_call": {
        "name": "T-58 保养提醒后约两周电话确认预约", "trigger": "rule.fired",
        "conditions": {"after_rule": "maintenance_reminder"},
        "schedule": {"offsets": [{"days": 14}], "local_time": "10:00", "stale_after": {"days": 14}},
        "action": _task("保养预约确认电话", ADVISOR, "service_advisor",
                        instructions="If the maintenance was done elsewhere, record it on the outcome."),
        "sla_hours": 72, "priority": 3},
    "insurance_renewal": {
        "name": "T-63 保险续保提醒", "trigger": "vehicle.date", "conditions": {"anchor_field": "insurance_expiry"},
        "schedule": {"offsets": [{"days": 45}, {"days": 15}], "direction": "before", "local_time": "10:00",
                     "stale_after": {"days": 7}},
        "action": _msg("insurance_renewal")},
    "annual_inspection": {
        "name": "T-64 车辆年检提醒", "trigger": "vehicle.date", "conditions": {"anchor_field": "next_inspection_date"},
        "schedule": {"offsets": [{"days": 30}, {"days": 7}], "direction": "before", "local_time": "10:00",
                     "stale_after": {"days": 5}},
        "action": _msg("annual_inspection")},
    "warranty_expiry": {
        "name": "T-62 保修到期提醒", "trigger": "vehicle.date", "conditions": {"anchor_field": "warranty_end"},
        "schedule": {"offsets": [{"days": 60}], "direction": "before", "local_time": "10:00",
                     "stale_after": {"days": 30}},
        "action": _msg("warranty_expiry")},
    # --- voice of the customer: survey_svc's low scores and closed complaints (§9.4, §10.9) ------------
    "service_recovery": {
        "name": "满意度低分回访(服务补救)", "trigger": "survey.low_score",
        "conditions": {"surveys": ["service_satisfaction", "nps"]},
        "schedule": {"offsets": [{}], "working_days_only": False},
        "action": _task("满意度低分回访(服务补救)", "service_manager", instructions=RECOVERY),
        "sla_hours": 24, "priority": 1},
    "sales_recovery": {
        "name": "销售满意度低分回访(服务补救)", "trigger": "survey.low_score",
        "conditions": {"surveys": ["sales_satisfaction"]},
        "schedule": {"offsets": [{}], "working_days_only": False},
        "action": _task("满意度低分回访(服务补救)", "sales_manager", instructions=RECOVERY),
        "sla_hours": 24, "priority": 1},
    "complaint_resurvey_recovery": {
        "name": "投诉回访调查仍不满意:客服经理跟进", "trigger": "survey.low_score",
        "conditions": {"surveys": ["complaint_satisfaction"]},
        "schedule": {"offsets": [{}], "working_days_only": False},
        "action": _task("投诉处理回访不满意跟进", "cs_manager", instructions=RECOVERY),
        "sla_hours": 24, "priority": 1},
    "complaint_revisit": {
        "name": "投诉结案后回访(客服经理重点跟踪)", "trigger": "complaint.closed",
        "schedule": {"offsets": [{"days": 3}], "local_time": "10:00", "working_days_only": False,
                     "stale_after": {"days": 14}},
        "action": _task("投诉结案后回访", "cs_manager",
                        instructions="§10.9: call back to soothe the customer and confirm they are satisfied with "
                                     "the result and the speed; record it. A new problem is a new complaint."),
        "sla_hours": 48, "priority": 2},
    "complaint_resurvey": {
        "name": "投诉结案后满意度调查", "trigger": "complaint.closed",
        "schedule": {"offsets": [{"days": 7}], "local_time": "11:00", "stale_after": {"days": 14}},
        "action": {"kind": "survey", "survey": "complaint_satisfaction", "channels": ["wechat", "sms"]}},
    # --- lifecycle -------------------------------------------------------------------------------
    "owner_lapsed_win_back": {
        "name": "12个月未回厂:流失预警挽回", "trigger": "owner.lapsed", "conditions": {"lapsed_months": 12},
        "schedule": {"offsets": [{}], "local_time": "10:00", "stale_after": {"days": 60}},
        "action": _task("12个月未回厂挽回", CS, instructions="Ask why; offer an inspection; record the cause."),
        "sla_hours": 120, "priority": 3},
    "owner_lost_plan": {
        "name": "24个月未回厂:流失客户计划", "trigger": "owner.lapsed", "conditions": {"lapsed_months": 24},
        "purpose": "marketing",
        "schedule": {"offsets": [{}], "local_time": "10:30", "stale_after": {"days": 60}, "holiday_peak": "defer"},
        "action": _msg("win_back")},
    # --- appointments (§11, §17.1: D-3 parts check, D-1 confirmation) ------------------------------
    "appointment_parts_check": {
        "name": "T-60 预约前3天配件确认", "trigger": "appointment.booked",
        "schedule": {"offsets": [{"days": 3}], "direction": "before", "local_time": "09:00",
                     "working_days_only": False, "stale_after": {"days": 2}},
        "action": _task("预约配件确认", ADVISOR, "service_advisor", kind="letter",
                        instructions="Parts in stock? Reorder, or reschedule and tell the customer."),
        "sla_hours": 24, "priority": 2},
    "appointment_confirm_call": {
        "name": "T-59 预约前一天确认电话", "trigger": "appointment.booked",
        "schedule": {"offsets": [{"days": 1}], "direction": "before", "local_time": "10:00",
                     "working_days_only": False, "stale_after": {"hours": 20}},
        "action": _task("预约前一天确认", ADVISOR, "service_advisor"), "sla_hours": 8, "priority": 1},
    # --- personal dates and festivals (§6.4) --------------------------------------------------------
    "birthday_greeting": {
        "name": "T-70 生日祝福", "trigger": "customer.birthday", "purpose": "marketing",
        "schedule": {"offsets": [{}], "local_time": "09:30", "stale_after": {"hours": 12}},
        "action": _msg("birthday_greeting")},
    "wedding_anniversary_greeting": {
        "name": "T-71 结婚纪念日祝福", "trigger": "customer.wedding_anniversary", "purpose": "marketing",
        "schedule": {"offsets": [{}], "local_time": "09:30", "stale_after": {"hours": 12}},
        "action": _msg("wedding_anniversary")},
    **{f"festival_{f}": {
        "name": f"T-72 {label}祝福", "trigger": "festival", "purpose": "marketing",
        "conditions": {"festival": f, "relationships": ["owner"]},
        "schedule": {"offsets": [{}], "local_time": "09:00",
                     "stale_after": {"hours": 12}, "holiday_peak": "allow"},
        "action": _msg("festival_greeting")}
        for f, label in (("spring_festival", "春节"), ("mid_autumn", "中秋"), ("national_day", "国庆"))},
}

#: Validated once at import: a broken default is a bug that must fail the build, not a tenant.
DEFAULT_RULES: dict[str, RuleDefinition] = {key: RuleDefinition.model_validate(raw) for key, raw in _RAW.items()}
