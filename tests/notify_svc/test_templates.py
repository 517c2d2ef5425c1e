"""Message templates over real HTTP: the defaults a new dealer group gets, rendering with typed variables (each
kind of bad value named), store overrides winning over the group's template, deletion refused while in use,
optimistic concurrency, tenancy and roles, and templates that may not be saved."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from customer_svc.models import Store
from notify_svc.app import NotifyRuntime
from notify_svc.consumers import subscriptions
from notify_svc.models import AuditEntry, Message, StoreView, Template
from notify_svc.templates import TemplateVariableError, ensure_default_templates, render, resolve_template
from notify_svc.templates.defaults import DEFAULTS, OPT_OUT
from shared.auth.roles import Role
from shared.db.base import dialect_insert
from shared.testing.events import EventTap
from shared.testing.waiting import eventually
from tests.conftest import Group, make_group

TEMPLATES = "/api/v1/templates"
CHANGED = "notify.template.changed.v1"
GOOD = {"store_name": "广本天河店", "customer_name": "张先生", "plate": "粤b·12345", "date": "2026-05-01",
        "model": "雅阁", "declined_items": ["更换刹车片"]}


def _wired(runtime: NotifyRuntime) -> bool:
    return any(s.matches("customer.store.upserted.v1") for s in subscriptions(runtime))


@pytest.fixture
async def tgroup(customer_runtime, notify_runtime: NotifyRuntime) -> Group:  # type: ignore[no-untyped-def]
    """A dealer group notify_svc knows, with its default templates. Once notify_svc's store consumer is wired it
    does this itself (the default-template test then proves the wiring); until then the fixture stands in for
    it: the stores are copied into notify_svc's read model and the defaults seeded directly."""
    group = await make_group(customer_runtime)
    if _wired(notify_runtime):
        async def known() -> bool:
            async with notify_runtime.sessionmaker() as s:
                stores = await s.scalar(sa.select(sa.func.count()).select_from(StoreView)
                                        .where(StoreView.tenant_id == group.tenant_id))
                templates = await s.scalar(sa.select(sa.func.count()).select_from(Template)
                                           .where(Template.tenant_id == group.tenant_id))
            return stores == 2 and templates >= sum(len(d.channels) for d in DEFAULTS.values())

        await eventually(known)
        return group
    async with customer_runtime.sessionmaker() as s:
        rows = await s.scalars(sa.select(Store).where(Store.tenant_id == group.tenant_id))
        stores = [dict(id=st.id, tenant_id=st.tenant_id, code=st.code, name=st.name, timezone=st.timezone,
                       active=True) for st in rows]
    async with notify_runtime.sessionmaker() as s, s.begin():
        await s.execute(dialect_insert(s)(StoreView.__table__).values(stores).on_conflict_do_nothing())
        await ensure_default_templates(s, group.tenant_id)
    return group


async def listed(nc: httpx.AsyncClient, group: Group, role: Role = Role.CS_AGENT, store: str = "A",
                 **params: str) -> list[dict]:
    resp = await nc.get(TEMPLATES, params=params, headers=group.headers(role, store))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def one(nc: httpx.AsyncClient, group: Group, key: str, channel: str = "sms") -> dict:
    rows = [t for t in await listed(nc, group, Role.ADMIN, key=key, channel=channel) if t["store_id"] is None]
    assert len(rows) == 1
    return rows[0]


async def preview(nc: httpx.AsyncClient, group: Group, template_id: str, variables: dict,
                  role: Role = Role.SALES_CONSULTANT) -> httpx.Response:
    return await nc.post(f"{TEMPLATES}/{template_id}/preview", json={"variables": variables},
                         headers=group.headers(role))


def bad_field(resp: httpx.Response) -> str:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    errors = resp.json()["errors"]
    assert len(errors) == 1
    return errors[0]["field"]


def new_template(key: str, body: str, variables: list[dict], **extra: object) -> dict:
    return {"key": key, "channel": "sms", "title": "测试模板", "body": body, "variables": variables, **extra}


async def create(nc: httpx.AsyncClient, group: Group, body: dict, role: Role = Role.ADMIN, store: str = "A",
                 **headers: str) -> httpx.Response:
    return await nc.post(TEMPLATES, json=body, headers=group.headers(role, store, **headers))


async def created(nc: httpx.AsyncClient, group: Group, body: dict, role: Role = Role.ADMIN,
                  store: str = "A") -> dict:
    resp = await create(nc, group, body, role, store)
    assert resp.status_code == 201, resp.text
    return resp.json()


# --- the defaults ------------------------------------------------------------------------------------------------


async def test_a_new_group_gets_every_default_template_for_its_channels(
        notify_client, notify_runtime: NotifyRuntime, tgroup: Group) -> None:
    rows = await listed(notify_client, tgroup, Role.SALES_CONSULTANT, "B")
    assert {(t["key"], t["channel"]) for t in rows} == {(k, c) for k, d in DEFAULTS.items() for c in d.channels}
    assert len(rows) == sum(len(d.channels) for d in DEFAULTS.values())
    assert {t["channel"] for t in rows if t["key"] == "escalation_notice"} == {"sms", "wechat", "wecom"}
    assert all(t["status"] == "approved" and t["locale"] == "zh-CN" and t["store_id"] is None
               and t["provider_codes"] == {} and t["version"] == 1 for t in rows)
    for t in rows:
        marketing = t["key"] in ("monthly_care", "win_back", "birthday_greeting", "wedding_anniversary",
                                 "festival_greeting")
        assert t["purpose"] == ("marketing" if marketing else "service"), t["key"]
        if t["channel"] == "sms":
            assert (OPT_OUT in t["body"]) is marketing, t["key"]
            order = t["provider_params"]["tencent"]
            assert order and all(f"{{{p}}}" in t["body"] for p in order)
        elif t["channel"] == "wechat":
            assert t["provider_params"]["wechat"] and OPT_OUT not in t["body"]
        else:  # a WeCom app text: no provider template
            assert t["channel"] == "wecom" and not any(t["provider_params"].values())
    maintenance = next(t for t in rows if t["key"] == "maintenance_reminder" and t["channel"] == "sms")
    assert maintenance["body"].startswith("{store_name}温馨提示:您的爱车{plate}本次保养的预计时间是{date}")
    survey = next(t for t in rows if t["key"] == "survey_invitation" and t["channel"] == "sms")
    assert {"name": "survey_link", "type": "url", "required": True, "max_length": 200} in survey["variables"]
    escalation = next(t for t in rows if t["key"] == "escalation_notice" and t["channel"] == "sms")
    assert {v["name"] for v in escalation["variables"]} == {"store_name", "task_title", "level", "customer_name"}

    # Seeding again adds nothing and leaves a group's own changes alone.
    async with notify_runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.update(Template).where(Template.tenant_id == tgroup.tenant_id,
                                                  Template.key == "birthday_greeting").values(status="disabled"))
        await ensure_default_templates(s, tgroup.tenant_id)
    again = await listed(notify_client, tgroup, Role.ADMIN)
    assert len(again) == sum(len(d.channels) for d in DEFAULTS.values())
    assert {t["status"] for t in again if t["key"] == "birthday_greeting"} == {"disabled"}

    # Every default renders with what its senders pass.
    sample = {**GOOD, "survey_link": "https://s.example.cn/a/xyz", "task_title": "提车3小时关怀电话", "level": 1,
              "appointment_time": "2026-05-01T02:30:00+00:00"}
    for t in rows:
        resp = await preview(notify_client, tgroup, t["id"], sample)
        assert resp.status_code == 200, (t["key"], resp.text)
        assert "{" not in resp.json()["text"]
    appointment = next(t for t in rows if t["key"] == "appointment_reminder" and t["channel"] == "wechat")
    shown = (await preview(notify_client, tgroup, appointment["id"], sample)).json()
    assert "5月1日 10:30" in shown["text"]  # 02:30 UTC is 10:30 in Shanghai
    assert shown["fields"] == {"name1": "张先生", "time2": "2026年5月1日 10:30", "thing3": "广本天河店"}


# --- rendering ----------------------------------------------------------------------------------------------------


async def test_preview_renders_typed_variables_for_every_provider(notify_client, tgroup: Group) -> None:
    sms = await one(notify_client, tgroup, "maintenance_reminder")
    resp = await preview(notify_client, tgroup, sms["id"], GOOD)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["text"] == ("广本天河店温馨提示:您的爱车粤B12345本次保养的预计时间是5月1日,请您确认里程并及时保养,"
                           "或提前预约,谢谢!如已保养请忽略此信息。")
    assert out["params"] == {"store_name": "广本天河店", "plate": "粤B12345", "date": "5月1日"}
    assert out["ordered_params"] == ["广本天河店", "粤B12345", "5月1日"]
    assert out["characters"] == len(out["text"]) and out["sms_parts"] == 1
    wechat = await one(notify_client, tgroup, "maintenance_reminder", "wechat")
    fields = (await preview(notify_client, tgroup, wechat["id"], GOOD)).json()["fields"]
    assert fields == {"thing1": "广本天河店", "car_number2": "粤B12345", "time3": "2026年5月1日"}

    # Each kind of bad value is a 422 naming the variable.
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "plate": None})) == "body.variables.plate"
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "plate": "ABC123"})) == \
        "body.variables.plate"
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "date": "下周一"})) == \
        "body.variables.date"
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "date": 20260501})) == \
        "body.variables.date"
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "store_name": "店" * 31})) == \
        "body.variables.store_name"
    assert bad_field(await preview(notify_client, tgroup, sms["id"], {**GOOD, "store_name": ["广本"]})) == \
        "body.variables.store_name"

    # The other types, in a store template of the caller's own.
    variables = [{"name": "phone", "type": "phone"}, {"name": "amount", "type": "money"},
                 {"name": "items", "type": "list", "max_length": 12}, {"name": "count", "type": "int"},
                 {"name": "link", "type": "url"}, {"name": "at", "type": "datetime"},
                 {"name": "note", "type": "text", "required": False}]
    body = "顾问{phone},费用{amount},项目{items}共{count}项,{at}到店{note}。详情{link}"
    custom = await created(notify_client, tgroup, new_template("typed_sample", body, variables,
                                                               store_id=str(tgroup.store_a)),
                           Role.SERVICE_MANAGER)
    values = {"phone": "+8613900001234", "amount": "1280.5", "items": ["更换机油", "刹车片", "轮胎换位", "雨刮"],
              "count": "4", "link": "https://s.example.cn/x", "at": "2026-05-01T01:00:00Z"}
    out = (await preview(notify_client, tgroup, custom["id"], values, Role.SERVICE_ADVISOR)).json()
    assert out["text"] == "顾问139****1234,费用1280.50元,项目更换机油、刹车片等共4项,5月1日 09:00到店。详情https://s.example.cn/x"
    assert out["params"]["note"] == ""
    for name, wrong in (("phone", "12345"), ("amount", "十元"), ("items", "更换机油"), ("count", "4.5"),
                        ("count", True), ("link", "ftp://s.example.cn/x"), ("at", "2026-05-01"), ("items", ["长" * 13]),
                        ("note", "第一行\n第二行")):
        resp = await preview(notify_client, tgroup, custom["id"], {**values, name: wrong}, Role.SERVICE_ADVISOR)
        assert bad_field(resp) == f"body.variables.{name}", (name, wrong)


async def test_render_refuses_a_body_written_around_the_api_and_stays_fast(notify_runtime: NotifyRuntime,
                                                                           tgroup: Group) -> None:
    async with notify_runtime.sessionmaker() as s:
        template = await resolve_template(s, tgroup.tenant_id, tgroup.store_a, "maintenance_reminder", "sms")
    assert template is not None
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        out = render(template, GOOD, tz=ZoneInfo("Asia/Shanghai"))
    assert n / (time.perf_counter() - started) > 5000
    assert out.template_code_for("aliyun") is None and out.template_key == "maintenance_reminder"
    broken = Template(id=uuid.uuid4(), tenant_id=tgroup.tenant_id, key="x", channel="sms", locale="zh-CN",
                      purpose="service", title="x", body="你好{name.__class__}", variables=[{"name": "name"}],
                      provider_params={}, provider_codes={"aliyun": "SMS_1"}, version=1, status="approved")
    with pytest.raises(TemplateVariableError) as err:
        render(broken, {"name": "张三"})
    assert err.value.field == "body"
    undeclared = Template(id=uuid.uuid4(), tenant_id=tgroup.tenant_id, key="x", channel="sms", locale="zh-CN",
                          purpose="service", title="x", body="你好{who}", variables=[], provider_params={},
                          provider_codes={}, version=1, status="approved")
    with pytest.raises(TemplateVariableError) as err:
        render(undeclared, {"who": "张三"})
    assert err.value.field == "who"


# --- store overrides -----------------------------------------------------------------------------------------------


async def test_a_store_override_wins_over_the_group_template_in_that_store_only(
        notify_client, notify_runtime: NotifyRuntime, tgroup: Group, event_tap: EventTap) -> None:
    group_sms = await one(notify_client, tgroup, "maintenance_reminder")
    body = {**{k: group_sms[k] for k in ("key", "channel", "variables", "provider_params", "purpose")},
            "store_id": str(tgroup.store_a), "title": "A店保养提醒", "sign_name": "广本天河店",
            "body": "{store_name}提醒您:爱车{plate}预计{date}需要保养,欢迎预约!",
            "provider_codes": {"aliyun": "SMS_276180002", "tencent": "1843107"}}
    body["provider_params"] = {"tencent": ["store_name", "plate", "date"]}
    headers = {"Idempotency-Key": f"tpl-{uuid.uuid4()}"}
    resp = await create(notify_client, tgroup, body, Role.SERVICE_MANAGER, "A", **headers)
    assert resp.status_code == 201, resp.text
    override = resp.json()
    assert resp.headers["ETag"] == 'W/"1"' and resp.headers["Location"] == f"{TEMPLATES}/{override['id']}"
    replay = await create(notify_client, tgroup, body, Role.SERVICE_MANAGER, "A", **headers)
    assert replay.status_code == 201 and replay.json()["id"] == override["id"]
    again = await create(notify_client, tgroup, body, Role.SERVICE_MANAGER, "A")
    assert again.status_code == 409 and again.json()["existing_id"] == override["id"]

    async with notify_runtime.sessionmaker() as s:
        in_a = await resolve_template(s, tgroup.tenant_id, tgroup.store_a, "maintenance_reminder", "sms")
        in_b = await resolve_template(s, tgroup.tenant_id, tgroup.store_b, "maintenance_reminder", "sms")
        group_only = await resolve_template(s, tgroup.tenant_id, None, "maintenance_reminder", "sms")
        none = await resolve_template(s, tgroup.tenant_id, tgroup.store_a, "maintenance_reminder", "sms", "en-US")
    assert in_a is not None and str(in_a.id) == override["id"]
    assert in_b is not None and str(in_b.id) == group_sms["id"]
    assert group_only is not None and str(group_only.id) == group_sms["id"] and none is None
    rendered = render(in_a, GOOD)
    assert rendered.text == "广本天河店提醒您:爱车粤B12345预计5月1日需要保养,欢迎预约!"
    assert rendered.template_code_for("aliyun") == "SMS_276180002" and rendered.sign_name == "广本天河店"
    assert rendered.ordered_params == ["广本天河店", "粤B12345", "5月1日"]

    # Store A lists both; store B's staff neither list nor read A's override.
    in_store_a = await listed(notify_client, tgroup, Role.SALES_CONSULTANT, "A", store_id=str(tgroup.store_a),
                              key="maintenance_reminder", channel="sms")
    assert [t["store_id"] for t in in_store_a] == [None, str(tgroup.store_a)]
    in_b_list = await listed(notify_client, tgroup, Role.SERVICE_MANAGER, "B", key="maintenance_reminder")
    assert all(t["store_id"] is None for t in in_b_list) and len(in_b_list) == 2
    hidden = await notify_client.get(f"{TEMPLATES}/{override['id']}", headers=tgroup.headers(Role.SERVICE_MANAGER, "B"))
    assert hidden.status_code == 404
    out_of_scope = await notify_client.get(TEMPLATES, params={"store_id": str(tgroup.store_b)},
                                           headers=tgroup.headers(Role.SALES_CONSULTANT, "A"))
    assert out_of_scope.status_code == 404

    event = (await event_tap.wait_for(CHANGED, subject=override["id"]))[0]
    assert event.data["key"] == "maintenance_reminder" and event.data["store_id"] == str(tgroup.store_a)
    assert event.data["version"] == 1 and event.data["deleted"] is False and event.tenantid == str(tgroup.tenant_id)


# --- deleting ------------------------------------------------------------------------------------------------------


async def test_a_template_in_use_is_not_deleted(notify_client, notify_runtime: NotifyRuntime, tgroup: Group,
                                                event_tap: EventTap) -> None:
    admin = tgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'})
    default = await one(notify_client, tgroup, "birthday_greeting")
    refused = await notify_client.delete(f"{TEMPLATES}/{default['id']}", headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "in use" in refused.json()["detail"]

    # A store's copy of the group's marketing greeting cannot make it a service message (consent, the window
    # and the opt-out text would no longer apply).
    relabelled = await notify_client.post(TEMPLATES, headers=tgroup.headers(Role.CS_MANAGER), json={
        **{k: default[k] for k in ("key", "channel", "variables", "provider_params")}, "purpose": "service",
        "title": "A店生日祝福", "body": "{customer_name}生日快乐!{store_name}敬上。", "store_id": str(tgroup.store_a)})
    assert relabelled.status_code == 422 and relabelled.json()["errors"][0]["field"] == "body.purpose", \
        relabelled.text

    # A store override of a default key falls back to the group's template: it may go.
    override = await created(notify_client, tgroup, {
        **{k: default[k] for k in ("key", "channel", "variables", "purpose", "provider_params")},
        "title": "A店生日祝福", "body": "{customer_name}生日快乐!{store_name}敬上。拒收请回复R",
        "store_id": str(tgroup.store_a)}, Role.CS_MANAGER)
    gone = await notify_client.delete(f"{TEMPLATES}/{override['id']}",
                                      headers=tgroup.headers(Role.CS_MANAGER, **{"If-Match": 'W/"1"'}))
    assert gone.status_code == 204, gone.text
    deleted = (await event_tap.wait_for(CHANGED, subject=override["id"], where=lambda e: e.data["deleted"]))[0]
    assert deleted.data["store_id"] == str(tgroup.store_a)

    # A key of the group's own is in use while a waiting message needs it and no other template is left.
    promo = await created(notify_client, tgroup, new_template(
        "spring_promo", "{customer_name}您好,春季保养季到店享8折,回T退订", [{"name": "customer_name"}],
        purpose="marketing"))
    async with notify_runtime.sessionmaker() as s, s.begin():
        message = Message(tenant_id=tgroup.tenant_id, store_id=tgroup.store_b, idempotency_key=f"t-{uuid.uuid4()}",
                          source="bulk", template_key="spring_promo", purpose="marketing", channels=["sms"],
                          status="held", next_attempt_at=datetime.now(UTC))
        s.add(message)
    busy = await notify_client.delete(f"{TEMPLATES}/{promo['id']}", headers=admin)
    assert busy.status_code == 409, busy.text
    # Once store B has its own, the message no longer needs the group's template; then B's own is in use.
    b_own = await created(notify_client, tgroup, {**new_template(
        "spring_promo", "{customer_name}您好,B店春季保养8折,回T退订", [{"name": "customer_name"}],
        purpose="marketing"), "store_id": str(tgroup.store_b)}, Role.CS_DIRECTOR)
    assert (await notify_client.delete(f"{TEMPLATES}/{promo['id']}", headers=admin)).status_code == 204
    assert (await notify_client.get(f"{TEMPLATES}/{promo['id']}", headers=admin)).status_code == 404
    b_url = f"{TEMPLATES}/{b_own['id']}"
    director = tgroup.headers(Role.CS_DIRECTOR, **{"If-Match": 'W/"1"'})
    assert (await notify_client.delete(b_url, headers=director)).status_code == 409
    async with notify_runtime.sessionmaker() as s, s.begin():
        await s.execute(sa.update(Message).where(Message.id == message.id).values(status="sent"))
    assert (await notify_client.delete(b_url, headers=director)).status_code == 204
    async with notify_runtime.sessionmaker() as s:
        audit = (await s.scalars(sa.select(AuditEntry).where(AuditEntry.record_id == uuid.UUID(b_own["id"]))
                                 .order_by(AuditEntry.at))).all()
    assert [a.action for a in audit] == ["create", "delete"] and audit[1].before["store_id"] == str(tgroup.store_b)


# --- concurrency, tenancy, roles ------------------------------------------------------------------------------------


async def test_updates_need_the_current_etag(notify_client, notify_runtime: NotifyRuntime, tgroup: Group,
                                             event_tap: EventTap) -> None:
    current = await one(notify_client, tgroup, "service_thanks")
    url = f"{TEMPLATES}/{current['id']}"
    change = {k: current[k] for k in ("purpose", "title", "variables", "provider_params", "status")}
    change["body"] = "{customer_name}您好,感谢您今天光临{store_name},祝您行车平安!"
    change["provider_params"] = {"tencent": ["customer_name", "store_name"]}
    missing = await notify_client.put(url, json=change, headers=tgroup.headers(Role.CS_DIRECTOR))
    assert missing.status_code == 428
    stale = await notify_client.put(url, json=change, headers=tgroup.headers(Role.CS_DIRECTOR, **{"If-Match": 'W/"7"'}))
    assert stale.status_code == 412 and stale.headers["content-type"].startswith("application/problem+json")
    got = await notify_client.get(url, headers=tgroup.headers(Role.CS_AGENT))
    ok = await notify_client.put(url, json=change, headers=tgroup.headers(Role.CS_DIRECTOR,
                                                                          **{"If-Match": got.headers["ETag"]}))
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == 'W/"2"' and ok.json()["version"] == 2 and ok.json()["body"] == change["body"]
    again = await notify_client.put(url, json=change, headers=tgroup.headers(Role.CS_DIRECTOR,
                                                                             **{"If-Match": got.headers["ETag"]}))
    assert again.status_code == 412
    async with notify_runtime.sessionmaker() as s:
        template = await resolve_template(s, tgroup.tenant_id, tgroup.store_b, "service_thanks", "sms")
    assert template is not None
    assert render(template, GOOD).text == "张先生您好,感谢您今天光临广本天河店,祝您行车平安!"  # the new version
    event = await event_tap.wait_for(CHANGED, subject=current["id"], where=lambda e: e.data["version"] == 2)
    assert event[0].data["status"] == "approved"


async def test_another_groups_templates_do_not_exist_for_you(notify_client, customer_runtime,
                                                             notify_runtime: NotifyRuntime, tgroup: Group) -> None:
    other = await make_group(customer_runtime)
    mine = await one(notify_client, tgroup, "maintenance_reminder")
    url = f"{TEMPLATES}/{mine['id']}"
    assert (await notify_client.get(url, headers=other.headers(Role.ADMIN))).status_code == 404
    assert (await preview(notify_client, other, mine["id"], GOOD, Role.ADMIN)).status_code == 404
    put = await notify_client.put(url, json={"title": "x", "body": "x"},
                                  headers=other.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert put.status_code == 404
    assert (await notify_client.delete(url, headers=other.headers(Role.ADMIN, **{"If-Match": "*"}))).status_code == 404
    assert all(t["id"] != mine["id"] for t in await listed(notify_client, other, Role.ADMIN))
    # Nor may an override be made for one of its stores.
    foreign = await create(notify_client, other, new_template("x_key", "你好", [], store_id=str(tgroup.store_a)))
    assert foreign.status_code == 404


async def test_only_managers_write_and_only_group_roles_write_group_templates(notify_client, tgroup: Group) -> None:
    body = new_template("store_notice", "{store_name}本周六照常营业。", [{"name": "store_name"}])
    for role in (Role.SALES_CONSULTANT, Role.SERVICE_ADVISOR, Role.CS_AGENT):
        resp = await create(notify_client, tgroup, {**body, "store_id": str(tgroup.store_a)}, role)
        assert resp.status_code == 403, (role, resp.text)
    group_wide = await create(notify_client, tgroup, body, Role.SERVICE_MANAGER)
    assert group_wide.status_code == 403
    other_store = await create(notify_client, tgroup, {**body, "store_id": str(tgroup.store_b)}, Role.SERVICE_MANAGER)
    assert other_store.status_code == 404
    mine = await created(notify_client, tgroup, {**body, "store_id": str(tgroup.store_a)}, Role.SHOWROOM_MANAGER)
    group_sms = await one(notify_client, tgroup, "win_back")
    change = {k: group_sms[k] for k in ("purpose", "title", "body", "variables", "provider_params")}
    resp = await notify_client.put(f"{TEMPLATES}/{group_sms['id']}", json=change,
                                   headers=tgroup.headers(Role.SERVICE_MANAGER, **{"If-Match": 'W/"1"'}))
    assert resp.status_code == 403
    consultant = await notify_client.delete(f"{TEMPLATES}/{mine['id']}",
                                            headers=tgroup.headers(Role.SALES_CONSULTANT, **{"If-Match": 'W/"1"'}))
    assert consultant.status_code == 403


# --- templates that may not be saved ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["你好{x.__class__}", "你好{x[0]}", "你好{x!r}", "你好{x:>30}", "你好{}", "你好{0}",
                                  "你好{x", "你好x}", "你好{_x}"])
async def test_unsafe_placeholders_are_refused(notify_client, tgroup: Group, body: str) -> None:
    resp = await create(notify_client, tgroup, new_template(f"unsafe_{uuid.uuid4().hex[:8]}", body,
                                                            [{"name": "x"}]))
    assert bad_field(resp) == "body.body"


async def test_a_template_must_hold_together(notify_client, tgroup: Group) -> None:
    key = "checked_key"
    bodies = {
        "body.body": new_template(key, "{customer_name}您好,{who}", [{"name": "customer_name"}]),
        "body.variables.1.name": new_template(key, "{a}", [{"name": "a"}, {"name": "a"}]),
        "body.variables.0.type": new_template(key, "{a}", [{"name": "a", "type": "email"}]),
        "body.variables.0.name": new_template(key, "你好", [{"name": "1a"}]),
        "body.variables.0.max_length": new_template(key, "{a}", [{"name": "a", "max_length": 50}]),
        "body.provider_params.tencent.1": new_template(key, "{a}", [{"name": "a"}],
                                                       provider_params={"tencent": ["a", "b"]}),
        "body.provider_params.wechat.thing1": {**new_template(key, "{a}", [{"name": "a"}], channel="wechat",
                                                              provider_params={"wechat": {"thing1": "b"}})},
    }
    for field, body in bodies.items():
        assert bad_field(await create(notify_client, tgroup, body)) == field, field
    # A long link is fine by SMS (links are not held to the 35 characters of other variables).
    link = await created(notify_client, tgroup, new_template(key, "评价请点{a}", [{"name": "a", "type": "url",
                                                                                   "max_length": 200}]))
    out = await preview(notify_client, tgroup, link["id"], {"a": "https://s.example.cn/" + "x" * 60})
    assert out.status_code == 200, out.text


async def test_a_marketing_sms_without_an_opt_out_is_refused(notify_client, tgroup: Group) -> None:
    body = new_template("spring_sale", "{customer_name}您好,春季到店保养享8折!", [{"name": "customer_name"}],
                        purpose="marketing")
    assert bad_field(await create(notify_client, tgroup, body)) == "body.body"
    service = await create(notify_client, tgroup, {**body, "purpose": "service"})
    assert service.status_code == 201  # a service message needs no opt-out
    wechat = await create(notify_client, tgroup, {**body, "channel": "wechat"})
    assert wechat.status_code == 201  # WeChat followers unsubscribe in WeChat
    for marker in ("拒收请回复R", "回TD退订"):
        ok = await create(notify_client, tgroup, {**body, "key": f"spring_sale_{len(marker)}",
                                                  "body": body["body"] + marker})
        assert ok.status_code == 201, ok.text
    # Turning a service SMS into marketing is checked the same way.
    created_service = service.json()
    change = {k: created_service[k] for k in ("title", "body", "variables", "provider_params")}
    resp = await notify_client.put(f"{TEMPLATES}/{created_service['id']}", json={**change, "purpose": "marketing"},
                                   headers=tgroup.headers(Role.ADMIN, **{"If-Match": 'W/"1"'}))
    assert bad_field(resp) == "body.body"


async def test_a_wechat_template_may_be_a_subscription_message(notify_client, tgroup: Group) -> None:
    body = new_template("service_done", "{customer_name}您好,爱车已保养完毕。", [{"name": "customer_name"}],
                        channel="wechat", provider_codes={"wechat": "Tmpl-ab_12"},
                        provider_params={"wechat": {"name1": "customer_name"}, "wechat_kind": "subscribe"})
    template = await created(notify_client, tgroup, body)
    assert template["provider_params"] == {"tencent": None, "wechat": {"name1": "customer_name"},
                                           "wechat_kind": "subscribe"}
    wrong = await create(notify_client, tgroup, {**body, "key": "service_done_2",
                                                 "provider_params": {"wechat_kind": "broadcast"}})
    assert bad_field(wrong) == "body.provider_params.wechat_kind"
    out = (await preview(notify_client, tgroup, template["id"], {"customer_name": "李女士"})).json()
    assert out["fields"] == {"name1": "李女士"} and out["provider_codes"] == {"wechat": "Tmpl-ab_12"}
