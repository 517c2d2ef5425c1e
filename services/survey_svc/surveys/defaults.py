"""The surveys every dealer group starts with: the service questionnaire of DOMAIN §9.2 (its 100/75/50/25/0
scale; Q6's 否 scores 0, §17.1), a post-delivery sales survey (§9.5), NPS, and the complaint re-survey that asks
about the result and the speed (§4.11.2)."""

from __future__ import annotations

from typing import Any

from survey_svc.surveys.schemas import SurveyDefinition

FIVE_POINT = [{"value": "very_satisfied", "label": "非常满意", "score": 100},
              {"value": "satisfied", "label": "满意", "score": 75},
              {"value": "neutral", "label": "一般", "score": 50},
              {"value": "dissatisfied", "label": "不满意", "score": 25},
              {"value": "very_dissatisfied", "label": "很不满意", "score": 0}]
YES_NO = [{"value": "yes", "label": "是", "score": 100}, {"value": "no", "label": "否", "score": 0}]
THREE_POINT = [{"value": "satisfied", "label": "满意", "score": 100},
               {"value": "basically_satisfied", "label": "基本满意", "score": 60},
               {"value": "dissatisfied", "label": "不满意", "score": 0}]


def _rate(qid: str, text: str, options: list[dict[str, Any]] = FIVE_POINT) -> dict[str, Any]:
    return {"id": qid, "type": "rating", "text": text, "options": options}


def _why(qid: str, about: str) -> dict[str, Any]:
    return {"id": qid, "type": "text", "text": "很抱歉没让您满意,请告诉我们哪里做得不好?", "required": False,
            "max_length": 500, "show_if": {"question": about, "max_score": 50}}


_RAW: dict[str, dict[str, Any]] = {
    "service_satisfaction": {"name": "维修满意度调查表", "definition": {
        "title": "维修满意度调查",
        "intro": "感谢您光临本店!请您回顾本次到站体验,对我们的员工、服务态度和专业知识作出评价。",
        "questions": [
            _rate("q1", "您对本次到站服务的总体满意度"),
            _why("q1_why", "q1"),
            _rate("q2", "服务顾问交车时车辆的清洁程度"),
            _rate("q3", "服务顾问对维修项目的解释说明"),
            _rate("q4", "是否按委托书正确完成维修工作,并向您展示旧件"),
            _rate("q5", "在客户休息室等候期间的服务"),
            _rate("q6", "服务顾问是否提醒您下次保养的时间、里程及24小时救援电话", YES_NO),
            {"id": "comment", "type": "text", "text": "宝贵意见", "required": False, "max_length": 1000},
            {"id": "contact_way", "type": "multiple", "text": "您喜欢的回访方式", "required": False, "min_choices": 0,
             "options": [{"value": "sms", "label": "短信"}, {"value": "phone", "label": "电话"},
                         {"value": "wechat", "label": "微信"}, {"value": "qq", "label": "QQ"}]},
            {"id": "contact_time", "type": "single", "text": "您喜欢的回访时间段", "required": False,
             "options": [{"value": "morning", "label": "上午"}, {"value": "afternoon", "label": "下午"},
                         {"value": "evening", "label": "晚上(21点前)"}]},
        ]}},
    "sales_satisfaction": {"name": "销售满意度调查", "definition": {
        "title": "购车满意度调查",
        "intro": "感谢您选择本店购车!请花一分钟评价本次购车与交车体验。",
        "questions": [
            _rate("q1", "您对本次购车体验的总体满意度"),
            _why("q1_why", "q1"),
            _rate("q2", "销售顾问的专业程度与服务态度"),
            _rate("q3", "交车过程(车辆清洁、功能讲解、手续办理)"),
            _rate("q4", "销售顾问是否兑现了购车时的承诺", YES_NO),
            {"id": "nps", "type": "nps", "text": "您有多大可能向亲友推荐本店?(0-10分)"},
            {"id": "comment", "type": "text", "text": "宝贵意见", "required": False, "max_length": 1000},
        ]}},
    "nps": {"name": "客户推荐意愿(NPS)", "definition": {
        "title": "推荐意愿调查",
        "questions": [
            {"id": "nps", "type": "nps", "text": "您有多大可能向亲友推荐本店?(0-10分)"},
            {"id": "nps_why", "type": "text", "text": "请告诉我们原因,帮助我们改进", "required": False,
             "max_length": 500, "show_if": {"question": "nps", "max_score": 60}},
        ]}},
    "complaint_satisfaction": {"name": "投诉处理满意度回访", "definition": {
        "title": "投诉处理回访",
        "intro": "感谢您给我们提出了宝贵的意见。请评价我们对您反映问题的处理。",
        "questions": [
            _rate("result", "您对处理结果是否满意", THREE_POINT),
            _rate("speed", "您对处理速度是否满意", THREE_POINT),
            {"id": "comment", "type": "text", "text": "还有什么需要我们改进的?", "required": False,
             "max_length": 1000},
        ]}},
}

#: Validated once at import: a broken default must fail the build, not a dealer group.
DEFAULT_SURVEYS: dict[str, tuple[str, SurveyDefinition]] = {
    key: (raw["name"], SurveyDefinition.model_validate(raw["definition"])) for key, raw in _RAW.items()}
