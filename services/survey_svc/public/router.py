"""The public answer page (``/s/<token>``: server-rendered, mobile-first, works in WeChat's in-app browser,
no script needed) and the same as JSON for apps (``/api/v1/public/surveys/<token>``). No login: the token is the
key. An expired, used or unknown link gets a friendly page; bad answers are marked beside their questions
(HTML) or named in a 422 problem (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from survey_svc.deps import SessionDep, RuntimeDep
from survey_svc.public.service import NOTICES, Opened, answer, find, mark_opened
from survey_svc.responses.router import answer_errors
from survey_svc.responses.schemas import PublicAnswer
from survey_svc.responses.service import NotAnswerable
from survey_svc.surveys.answers import AnswerErrors
from survey_svc.surveys.schemas import SurveyDefinition
from shared.errors import AppError, Conflict, NotFound, problem_responses

router = APIRouter(tags=["public survey"], responses=problem_responses(422))
templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]), auto_reload=False)
Token = Annotated[str, PathParam(min_length=1, max_length=64, description="The token of the answer link.")]
#: The page takes any segment: a mangled link (too long, cut short) gets the friendly "link not valid" page.
PageToken = Annotated[str, PathParam()]
#: Form posts larger than this are refused (a full survey answer is a few KiB).
MAX_FORM_BYTES = 64 * 1024
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}


class Gone(AppError):
    status, code, title = 410, "gone", "No longer open"


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**values), status_code=status, headers=HEADERS)


def _notice(state: str) -> HTMLResponse:
    heading, message, status = NOTICES[state]
    return _page("notice.html", status, title=heading, heading=heading, message=message)


def _form(opened: Opened, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> HTMLResponse:
    return _page("form.html", status, title=opened.definition.title, survey=opened.definition,
                 store_name=opened.store_name, values=values, errors=errors)


def _client(request: Request) -> tuple[str | None, str | None]:
    """The answering device: the gateway's view of the client address, else the socket's."""
    forwarded = request.headers.get("x-forwarded-for", "")
    ip = forwarded.split(",")[-1].strip() or (request.client.host if request.client else None)
    return ip, request.headers.get("user-agent", "")[:300]


def _form_values(opened: Opened, body: bytes) -> dict[str, Any] | None:
    """The posted answers (a multiple choice as a list); None for a body no browser form makes (too many
    fields). NUL characters, which no one types and Postgres refuses, are dropped."""
    try:
        parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          max_num_fields=200)
    except ValueError:
        return None
    values: dict[str, Any] = {}
    for key, items in parsed.items():
        items = [i.replace("\x00", "") for i in items]
        q = opened.definition.question(key)
        values[key] = items if q is not None and q.type == "multiple" else items[-1]
    return values


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def answer_page(token: PageToken, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock()
    opened = await find(session, token, now)
    if opened is None:
        return _notice("not_found")
    if opened.state != "open":
        return _notice(opened.state)
    await mark_opened(session, opened, now)
    return _form(opened, {}, {})


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def submit_page(token: PageToken, request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock()
    body = await request.body()
    opened = await find(session, token, now, lock=True) if len(body) <= MAX_FORM_BYTES else None
    values = _form_values(opened, body) if opened is not None else None
    if len(body) > MAX_FORM_BYTES or (opened is not None and values is None):
        return _page("notice.html", 413, title="内容过长", heading="内容过长", message="您填写的内容太长,请精简后再提交。")
    if opened is None or values is None:
        return _notice("not_found")
    try:
        await answer(session, runtime.outbox, runtime.settings.token_secret, opened, values, *_client(request), now,
                     form=True)
    except NotAnswerable as exc:
        return _notice(exc.state)
    except AnswerErrors as exc:
        await session.rollback()
        return _form(opened, values, exc.errors, 422)
    heading = "提交成功"
    return _page("notice.html", 200, title=heading, heading=heading, message=opened.definition.thanks)


class PublicSurvey(BaseModel):
    state: str = Field(description="open, answered, expired or cancelled: only an open survey takes an answer.")
    store_name: str | None
    survey: SurveyDefinition | None = Field(description="The questions (null unless open).")


class PublicResult(BaseModel):
    state: str = "answered"
    thanks: str


@router.get("/api/v1/public/surveys/{token}", response_model=PublicSurvey, responses=problem_responses(404))
async def get_public_survey(token: Token, session: SessionDep, runtime: RuntimeDep) -> PublicSurvey:
    """The survey behind an answer link (no login: the link's token is the key). 404 for an unknown token."""
    now = runtime.clock()
    opened = await find(session, token, now)
    if opened is None:
        raise NotFound("No survey behind this link.")
    await mark_opened(session, opened, now)
    return PublicSurvey(state=opened.state, store_name=opened.store_name,
                        survey=opened.definition if opened.state == "open" else None)


@router.post("/api/v1/public/surveys/{token}/responses", status_code=201, response_model=PublicResult,
             responses=problem_responses(404, 409, 410, 422))
async def post_public_response(token: Token, body: PublicAnswer, request: Request, session: SessionDep,
                               runtime: RuntimeDep) -> PublicResult:
    """Answer the survey behind a link, once. 422 names each bad or missing answer (`body.answers.<question>`);
    409 when already answered; 410 when the link expired or was withdrawn; 404 for an unknown token."""
    now = runtime.clock()
    opened = await find(session, token, now, lock=True, store_name=False)
    if opened is None:
        raise NotFound("No survey behind this link.")
    try:
        await answer(session, runtime.outbox, runtime.settings.token_secret, opened, body.answers, *_client(request),
                     now)
    except NotAnswerable as exc:
        if exc.state == "answered":
            raise Conflict("This survey was already answered.") from None
        raise Gone(f"This survey is {exc.state}.") from None
    except AnswerErrors as exc:
        raise answer_errors(exc) from None
    return PublicResult(thanks=opened.definition.thanks)
