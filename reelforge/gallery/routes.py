"""The gallery's pages over one Runtime: the job list at ``/``, everything else under ``/gallery/``.

GET  /                               jobs: poster, status, live progress, model, duration, seed, prompt;
                                     ?q= searches prompts, ?status= and ?model= filter, ?before= pages
GET  /gallery/new                    the new-job form
POST /gallery/new                    submit it (multipart: the image upload); errors sit by their field
GET  /gallery/jobs/{id}              player, recipe, downloads, contact sheet, cancel, run again
POST /gallery/jobs/{id}/again        the same request with another seed or model
GET  /gallery/lint?prompt=&task=     prompt-guide warnings as JSON, for the form as you type
GET  /gallery/events?ids=a,b         server-sent events for the list: one stream for all its live rows
GET  /gallery/static/...             CSS and JS (no build step, nothing from the network)

Video, poster and download links, the job page's progress stream and the cancel button use the
server's own extension routes (``/reelforge/jobs/{id}/files/{name}`` with HTTP Range,
``/reelforge/jobs/{id}/events``, ``POST /reelforge/jobs/{id}/cancel``). The list has its own stream
because a browser opens at most six connections to one server: one stream per row would stall it.
Form posts pass a same-origin check (:mod:`reelforge.server.origin`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import JobNotFoundError, ReelforgeError, RequestError
from ..jobs import JobStatus
from ..models import get_model
from ..runtime import Runtime, statuses
from . import forms, views
from ..server.origin import same_origin_problem

log = logging.getLogger("reelforge.gallery")

HERE = Path(__file__).parent
PAGE_SIZE = 48
POLL_S = 1.0  # how often the list stream looks again when no change hub wakes it
_JOB_ID = re.compile(r"[a-z0-9]{12}")
_FORM_FIELDS = tuple(forms.DEFAULTS)

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(task_labels=forms.TASK_LABELS, fit_labels=forms.FIT_LABELS, job_statuses=[s.value for s in JobStatus])


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status_code)


def error_page(status_code: int, title: str, message: str) -> HTMLResponse:
    return render("error.html", status_code, title=title, message=message)


class Gallery:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"], name="gallery"),
            Route("/gallery/new", self.new_form, methods=["GET"]),
            Route("/gallery/new", self.new_submit, methods=["POST"]),
            Route("/gallery/jobs/{job_id}", self.job_page, methods=["GET"]),
            Route("/gallery/jobs/{job_id}/again", self.run_again, methods=["POST"]),
            Route("/gallery/lint", self.lint, methods=["GET"]),
            Route("/gallery/events", self.events, methods=["GET"]),
            Mount("/gallery/static", StaticFiles(directory=HERE / "static"), name="gallery-static"),
        ]

    # --- the list ----------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        q = request.query_params
        search = q.get("q", "").strip()
        status = q.get("status", "")
        model = q.get("model", "")
        error = None
        try:
            wanted = statuses(status or None)
        except RequestError as exc:
            wanted, error = None, exc.message
        after = _cursor(q.get("before", ""))
        needle = search or None
        rows = await run_in_threadpool(
            self.runtime.store.list, statuses=wanted, search=needle, model_id=model or None, limit=PAGE_SIZE + 1, after=after
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        older = None
        if more:
            last = rows[-1]
            params = {k: v for k, v in (("q", search), ("status", status), ("model", model)) if v}
            params["before"] = f"{last.submit_time!r}:{last.id}"
            older = "/?" + "&".join(f"{k}={_quote(v)}" for k, v in params.items())
        jobs = await run_in_threadpool(lambda: [views.summary(r) for r in rows])
        return render(
            "list.html",
            400 if error else 200,
            jobs=jobs,
            q=search,
            status=status,
            model=model,
            models=forms.model_choices(),
            error=error,
            older=older,
            filtered=bool(search or status or model or after),
        )

    # --- new job -----------------------------------------------------------------------------
    async def new_form(self, request: Request) -> Response:
        return render("new.html", form=forms.NewJobForm(), models=forms.model_choices())

    async def new_submit(self, request: Request) -> Response:
        problem = same_origin_problem(request)
        if problem:
            return error_page(403, "Form refused", f"This form was not posted from the gallery's own page: {problem}.")
        data = await request.form()
        values = {k: str(data.get(k, "")) for k in _FORM_FIELDS if isinstance(data.get(k, ""), str)}
        upload = data.get("image")
        image = await upload.read() if isinstance(upload, UploadFile) and (upload.filename or upload.size) else None
        form = forms.NewJobForm(values={**forms.DEFAULTS, **values})
        try:
            spec = get_model(form.values["model"])
            request_ = forms.build_request(form.values, image, spec.limits.shot_seconds)
            record, _ = await run_in_threadpool(self.runtime.submit, spec.model_id, request_)
        except forms.FormErrors as exc:
            form.errors = exc.errors
        except ReelforgeError as exc:
            field = forms.form_field(getattr(exc, "field", "form"))
            form.errors = {field: forms.error_message(exc)}
        else:
            return RedirectResponse(views.job_url(record.id), status_code=303)
        form.lint = forms.lint(form.values)
        return render("new.html", 400, form=form, models=forms.model_choices())

    # --- one job -----------------------------------------------------------------------------
    async def _record(self, job_id: str):
        if not _JOB_ID.fullmatch(job_id):
            raise JobNotFoundError(job_id)
        return await run_in_threadpool(self.runtime.get, job_id)

    async def job_page(self, request: Request) -> Response:
        return await self._job_page(request.path_params["job_id"])

    async def _job_page(self, job_id: str, status_code: int = 200, again: dict | None = None, errors: dict | None = None) -> Response:
        try:
            record = await self._record(job_id)
        except JobNotFoundError:
            return error_page(404, "No such job", f"There is no job {job_id!r} in the job log.")
        detail = await run_in_threadpool(views.detail, record)
        again = again or {"model": record.model_id, "seed": str(forms.random_seed())}
        return render("job.html", status_code, job=detail, models=forms.model_choices(), again=again, errors=errors or {})

    async def run_again(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        problem = same_origin_problem(request)
        if problem:
            return error_page(403, "Form refused", f"This form was not posted from the gallery's own page: {problem}.")
        try:
            record = await self._record(job_id)
        except JobNotFoundError:
            return error_page(404, "No such job", f"There is no job {job_id!r} in the job log.")
        data = await request.form()
        values = {"model": str(data.get("model", record.model_id)), "seed": str(data.get("seed", ""))}
        try:
            req = forms.rerun_request(record.model_input, values)
            tags = [{"key": views.RERUN_TAG, "value": record.id}]
            new, _ = await run_in_threadpool(lambda: self.runtime.submit(values["model"], req, tags=tags))
        except forms.FormErrors as exc:
            errors = exc.errors
        except ReelforgeError as exc:
            # Only model and seed are on this form; any other field's problem is named by its JSON path.
            field = forms.form_field(getattr(exc, "field", "form"))
            errors = {field: forms.error_message(exc)} if field in ("model", "seed") else {"form": str(exc)}
        else:
            return RedirectResponse(views.job_url(new.id), status_code=303)
        return await self._job_page(job_id, 400, again=values, errors=errors)

    # --- small JSON and streams --------------------------------------------------------------
    async def lint(self, request: Request) -> JSONResponse:
        values = {k: request.query_params.get(k, "") for k in ("prompt", "shots", "task", "duration")}
        return JSONResponse({"warnings": forms.lint(values)})

    async def events(self, request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:100]
        if not all(_JOB_ID.fullmatch(i) for i in ids):
            return JSONResponse({"message": "ids: a comma-separated list of job ids"}, status_code=400)
        hub = getattr(getattr(request.app.state, "reelforge", None), "hub", None)
        runtime = self.runtime

        def load() -> list:
            out = []
            for i in ids:
                try:
                    out.append(runtime.get(i))
                except JobNotFoundError:
                    pass
            return out

        async def stream():
            wake = hub.subscribe() if hub is not None else None
            sent: dict[str, tuple] = {}
            try:
                while True:
                    records = await run_in_threadpool(load)
                    for r in records:
                        key = (r.status, r.progress, r.stage)
                        if sent.get(r.id) != key:
                            sent[r.id] = key
                            payload = await run_in_threadpool(views.live, r)
                            yield f"event: job\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"
                    if all(r.status.done for r in records) or (hub is not None and hub.stopping):
                        yield "event: end\ndata: {}\n\n"
                        return
                    if wake is None:
                        await asyncio.sleep(POLL_S)
                    else:
                        try:
                            await asyncio.wait_for(wake.wait(), POLL_S * 15)
                        except asyncio.TimeoutError:
                            yield ": ping\n\n"
                        wake.clear()
            finally:
                if wake is not None:
                    hub.unsubscribe(wake)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def gallery_routes(runtime: Runtime) -> list[BaseRoute]:
    """The gallery's routes over ``runtime``; add them after the API's own routes."""
    return Gallery(runtime).routes()


def _cursor(text: str) -> tuple[float, str] | None:
    t, _, job_id = text.partition(":")
    try:
        return (float(t), job_id) if _JOB_ID.fullmatch(job_id) else None
    except ValueError:
        return None


def _quote(value: str) -> str:
    return quote(value, safe="")
