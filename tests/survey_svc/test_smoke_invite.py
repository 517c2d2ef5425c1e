"""Smoke: a survey command becomes an invitation whose link opens the form and takes one answer."""

from __future__ import annotations

from survey_svc.models import Response
from tests.survey_svc.conftest import invitation_by_key, new_customer, publish_survey_request, rows, token_of


async def test_command_to_answer(client, survey_client, survey_runtime, sgroup, event_tap):  # type: ignore[no-untyped-def]
    customer = await new_customer(client, sgroup)
    key = await publish_survey_request(survey_runtime, sgroup, customer["id"])
    inv = await invitation_by_key(survey_runtime, sgroup, key)
    token = token_of(survey_runtime, inv.id)
    page = await survey_client.get(f"/s/{token}")
    assert page.status_code == 200 and "维修满意度调查" in page.text
    r = await survey_client.post(f"/api/v1/public/surveys/{token}/responses",
                                 json={"answers": {"q1": "satisfied", "q2": "satisfied", "q3": "satisfied",
                                                   "q4": "very_satisfied", "q5": "satisfied", "q6": "yes"}})
    assert r.status_code == 201, r.text
    [resp] = await rows(survey_runtime, Response, sgroup.tenant_id, invitation_id=inv.id)
    assert resp.satisfaction_index == 83.33 and not resp.low_score
