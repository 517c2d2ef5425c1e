"""Answers checked against the survey version they answer, then scored.

Validation names the question (``answers.q3``) so the public page can show the message beside it and the API
can answer 422 with the field. Scores: each rating option's 0–100 score; the satisfaction index is the mean over
the scored rating questions answered; NPS classes are 9–10 promoter, 7–8 passive, 0–6 detractor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from survey_svc.surveys.schemas import Question, SurveyDefinition


class AnswerErrors(ValueError):
    """Every problem found, by question id (all are reported at once, so the page can mark each)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Scored:
    answers: dict[str, Any]
    item_scores: dict[str, float] = field(default_factory=dict)
    satisfaction_index: float | None = None
    overall_score: float | None = None
    nps_score: int | None = None
    nps_class: str | None = None
    comment: str | None = None


def nps_class(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def _score_of(question: Question, value: Any) -> float | None:
    if question.type == "rating":
        option = question.option(value)
        return option.score if option else None
    if question.type == "nps":
        return float(value) * 10
    return None


def shown(question: Question, answers: dict[str, Any], definition: SurveyDefinition) -> bool:
    """Whether a question is asked, given the answers to the earlier ones."""
    cond = question.show_if
    if cond is None:
        return True
    earlier = definition.question(cond.question)
    if earlier is None or cond.question not in answers:
        return False
    value = answers[cond.question]
    if cond.max_score is not None:
        score = _score_of(earlier, value)
        return score is not None and score <= cond.max_score
    picked = value if isinstance(value, list) else [value]  # a multiple choice matches on any chosen value
    return any(v in (cond.values or []) for v in picked)


def _check(q: Question, value: Any) -> tuple[Any, str | None]:
    """The normalised value, or the error to show."""
    if q.type in ("rating", "single"):
        if not isinstance(value, str) or q.option(value) is None:
            return None, "choose one of the options"
        return value, None
    if q.type == "nps":
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,2}", value.strip()):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
            return None, "give a whole number from 0 to 10"
        return value, None
    if q.type == "multiple":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "choose from the options"
        picked = list(dict.fromkeys(value))
        if any(q.option(v) is None for v in picked):
            return None, "choose from the options"
        if len(picked) < q.min_choices:
            return None, f"choose at least {q.min_choices}"
        if q.max_choices is not None and len(picked) > q.max_choices:
            return None, f"choose at most {q.max_choices}"
        return picked, None
    if not isinstance(value, str):
        return None, "give text"
    text = value.strip()
    if len(text) > q.max_length:
        return None, f"at most {q.max_length} characters"
    return text, None


def _empty(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def validate(definition: SurveyDefinition, raw: dict[str, Any], *, form: bool = False) -> dict[str, Any]:
    """The answers, normalised; raises :class:`AnswerErrors` naming each bad or missing answer. ``form``: the
    page without script shows every follow-up question, so one answered though not asked is no error there: its
    text is kept (what the customer wrote), a choice is left out."""
    errors: dict[str, str] = {}
    unknown = [k for k in raw if definition.question(k) is None]
    for key in unknown[:10]:
        errors[str(key)[:40]] = "not a question of this survey"
    answers: dict[str, Any] = {}
    for q in definition.questions:
        if not shown(q, answers, definition):
            if not _empty(raw.get(q.id)) and not form:
                errors[q.id] = "not asked for the answers given"
            elif not _empty(raw.get(q.id)) and q.type == "text":
                normalised, error = _check(q, raw[q.id])
                if error:
                    errors[q.id] = error
                elif not _empty(normalised):
                    answers[q.id] = normalised
            continue
        value = raw.get(q.id)
        if _empty(value):
            if q.required:
                errors[q.id] = "this question needs an answer"
            continue
        normalised, error = _check(q, value)
        if error:
            errors[q.id] = error
        elif not _empty(normalised):
            answers[q.id] = normalised
    if errors:
        raise AnswerErrors(errors)
    return answers


def score(definition: SurveyDefinition, answers: dict[str, Any]) -> Scored:
    result = Scored(answers=answers)
    comments = []
    for q in definition.questions:
        if q.id not in answers:
            continue
        value = answers[q.id]
        if q.type == "rating" and q.scored:
            s = _score_of(q, value)
            if s is not None:
                result.item_scores[q.id] = s
                if result.overall_score is None:
                    result.overall_score = s
        elif q.type == "nps":
            result.nps_score = int(value)
            result.nps_class = nps_class(int(value))
        elif q.type == "text" and value:
            comments.append(value)
    if result.item_scores:
        result.satisfaction_index = round(sum(result.item_scores.values()) / len(result.item_scores), 2)
    elif result.nps_score is not None:
        result.satisfaction_index = float(result.nps_score * 10)
    result.comment = "\n".join(comments)[:4000] or None
    return result
