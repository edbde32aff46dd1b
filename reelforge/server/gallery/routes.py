"""The gallery's pages over one Runtime: the job list at ``/``, everything else under ``/gallery/``.

GET  /                               jobs: poster, status, live progress, model, duration, seed, prompt;
                                     ?q= searches prompts, ?status= and ?model= filter, ?before= pages
GET  /gallery/new                    the new-job form
POST /gallery/new                    submit it (multipart: the image upload); errors sit by their field
GET  /gallery/jobs/{id}              player, recipe, downloads, contact sheet, cancel, run again
GET  /gallery/jobs/{id}/image        the request's starting image (decoded from modelInput), for the recipe
POST /gallery/jobs/{id}/again        the same request with another seed or model
GET  /gallery/lint?prompt=&task=     prompt-guide warnings (and what the previz will show) as JSON, as you type
GET  /gallery/events?ids=a,b         server-sent events for the list: one stream for all its live rows
GET  /gallery/static/...             CSS and JS (no build step, nothing from the network)

Video, poster and download links, the job page's progress stream and the cancel button use the
server's own extension routes (``/reelforge/jobs/{id}/files/{name}`` with HTTP Range,
``/reelforge/jobs/{id}/events``, ``POST /reelforge/jobs/{id}/cancel``). The list has its own stream
because a browser opens at most six connections to one server: one stream per row would stall it.
Form posts pass the server's same-origin check before they get here (:mod:`reelforge.server.origin`).

Jobs from the gallery's forms go to the server's default output (``--default-output``, or the
bucket folder's ``s3://reelforge-outputs/videos`` under ``--bucket-dir``), else to the local
outputs folder. The server's middleware answers a too-large form post with
:func:`upload_too_large` and an unknown page asked for by a browser with :func:`not_found`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reelforge.errors import ImageError, JobNotFoundError, ReelforgeError, RequestError
from reelforge.jobs.record import JobStatus
from reelforge.engines.catalog import get_model
from reelforge.jobs import webhooks
from reelforge.jobs.listing import statuses
from reelforge.jobs.runtime import Runtime
from reelforge.jobs.record import JOB_ID
from reelforge.server.events import PING, sse_event, sse_response
from reelforge.server.gallery import forms, views

log = logging.getLogger("reelforge.gallery")

HERE = Path(__file__).parent
PAGE_SIZE = 48
POLL_S = 1.0  # how often the list stream looks again when no change hub wakes it
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


def error_page(status_code: int, title: str, message: str, back: tuple[str, str] | None = None) -> HTMLResponse:
    return render("error.html", status_code, title=title, message=message, back=back)


def megabytes(n: int) -> str:
    """``n`` bytes in MB (MiB) as a person writes it: 32 MB, 0.5 MB."""
    mb = n / (1024 * 1024)
    return f"{mb:.0f} MB" if mb >= 10 or mb == int(mb) else f"{mb:.1f} MB"


def upload_too_large(path: str, limit: int, size: int | None = None) -> HTMLResponse:
    """The page for a gallery form post over the server's body limit (the body was not read, so the form cannot be refilled)."""
    job = re.fullmatch(r"/gallery/jobs/([a-z0-9]{12})/again", path)
    back = (views.job_url(job.group(1)), "Back to the job") if job else ("/gallery/new", "Back to the new-video form")
    sent = f"The form sent {megabytes(size)}; " if size else ""
    message = (
        f"{sent}this server accepts at most {megabytes(limit)} in one form, image included "
        "(reelforge serve --max-body sets the limit). Nothing was started and the form's entries were not kept: "
        "go back, choose a smaller image and send the form again."
    )
    return error_page(413, "The upload was too large", message, back=back)


def not_found(path: str) -> HTMLResponse:
    """The page for a URL that no page or operation answers."""
    return error_page(404, "Page not found", f"There is no page at {path[:200]}.")


def _image_hint(max_body: int | None) -> str:
    limit = f", up to {megabytes(max_body)}" if max_body else ""
    return f"PNG or JPEG{limit}; the video starts from it."


class Gallery:
    def __init__(self, runtime: Runtime, default_output: str | None = None, max_body: int | None = None):
        self.runtime = runtime
        self.default_output = default_output  # None: the local outputs folder
        self.max_body = max_body

    def _new_page(self, form: forms.NewJobForm, status_code: int = 200) -> HTMLResponse:
        # The browser refuses a file that would take the form over the limit before sending it;
        # 64 KiB is left for the other fields.
        max_file = max(self.max_body - 64 * 1024, 0) if self.max_body else None
        return render(
            "new.html", status_code, form=form, models=forms.model_choices(), image_hint=_image_hint(self.max_body),
            max_file=max_file, field_labels=forms.FIELD_LABELS, duration_hints=forms.DURATION_HINTS,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"], name="gallery"),
            Route("/gallery/new", self.new_form, methods=["GET"]),
            Route("/gallery/new", self.new_submit, methods=["POST"]),
            Route("/gallery/jobs/{job_id}", self.job_page, methods=["GET"]),
            Route("/gallery/jobs/{job_id}/again", self.run_again, methods=["POST"]),
            Route("/gallery/jobs/{job_id}/image", self.start_image, methods=["GET"]),
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
        before = _cursor(q.get("before", ""))  # a later page: jobs older than this one
        after = None if before else _cursor(q.get("after", ""))  # back a page: jobs newer than this one
        query: dict[str, Any] = dict(statuses=wanted, search=search or None, model_id=model or None, limit=PAGE_SIZE + 1)
        store = self.runtime.store
        rows, newer_exist = [], False
        try:
            if after is not None:
                rows = await run_in_threadpool(lambda: store.list(**query, after=after, descending=False))
                if len(rows) > PAGE_SIZE:
                    newer_exist, rows = True, rows[:PAGE_SIZE][::-1]
                else:
                    after = None  # fewer than a page of newer jobs: that is the first page
            if after is None:
                rows = await run_in_threadpool(lambda: store.list(**query, after=before))
                newer_exist = before is not None
        except RequestError as exc:  # the store refuses a search too short to look up
            rows, newer_exist, after, error = [], False, None, exc.message
        more = len(rows) > PAGE_SIZE if after is None else True  # a page reached going back has older jobs after it
        rows = rows[:PAGE_SIZE]
        params = {k: v for k, v in (("q", search), ("status", status), ("model", model)) if v}

        def link(key: str, record) -> str:
            return "/?" + "&".join(f"{k}={_quote(v)}" for k, v in {**params, key: f"{record.submit_time!r}:{record.id}"}.items())

        older = link("before", rows[-1]) if more and rows else None
        newer = link("after", rows[0]) if newer_exist and rows else None
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
            newer=newer,
            first_page=not newer,
            count=views.count_line(len(jobs), filtered=bool(search or status or model), first_page=not newer, more=bool(older)),
            filtered=bool(search or status or model or newer),
        )

    # --- new job -----------------------------------------------------------------------------
    async def new_form(self, request: Request) -> Response:
        return self._new_page(forms.NewJobForm())

    async def new_submit(self, request: Request) -> Response:
        data = await request.form()
        values = {k: str(data.get(k, "")) for k in _FORM_FIELDS if isinstance(data.get(k, ""), str)}
        upload = data.get("image")
        image = await upload.read() if isinstance(upload, UploadFile) and (upload.filename or upload.size) else None
        form = forms.NewJobForm(values={**forms.DEFAULTS, **values})
        try:
            spec = get_model(form.values["model"])
            request_ = forms.build_request(form.values, image, spec.limits.shot_seconds)
            hook = form.values.get("webhook", "").strip() or None  # a URL, or the name of an endpoint the server registered
            named = [{"key": webhooks.TAG, "value": hook}] if hook and "://" not in hook else None
            record, _ = await run_in_threadpool(lambda: self.runtime.submit(
                spec.model_id, request_, self.default_output, tags=named, webhook=None if named else hook))
        except forms.FormErrors as exc:
            form.errors = exc.errors
        except ReelforgeError as exc:
            field = forms.form_field(getattr(exc, "field", "form"))
            form.errors = {field: forms.error_message(exc)}
        else:
            return RedirectResponse(views.job_url(record.id), status_code=303)
        form.lint, form.previz = forms.lint(form.values), forms.previz(form.values)
        if image is not None:  # browsers never refill a file input: say so by the field
            form.lost_image = getattr(upload, "filename", "") or "the image"
        return self._new_page(form, 400)

    # --- one job -----------------------------------------------------------------------------
    async def _record(self, job_id: str):
        if not JOB_ID.fullmatch(job_id):
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
        detail.webhooks = [webhooks.shown(d) for d in await run_in_threadpool(cast(Any, self.runtime.store).deliveries, record.id)]
        again = again or {"model": record.model_id, "seed": str(forms.random_seed())}
        return render("job.html", status_code, job=detail, models=forms.model_choices(), again=again, errors=errors or {})

    async def run_again(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            record = await self._record(job_id)
        except JobNotFoundError:
            return error_page(404, "No such job", f"There is no job {job_id!r} in the job log.")
        data = await request.form()
        values = {"model": str(data.get("model", record.model_id)), "seed": str(data.get("seed", ""))}
        try:
            req = forms.rerun_request(record.model_input, values)
            tags = [{"key": views.RERUN_TAG, "value": record.id}]
            new, _ = await run_in_threadpool(lambda: self.runtime.submit(values["model"], req, self.default_output, tags=tags))
        except forms.FormErrors as exc:
            errors = exc.errors
        except ReelforgeError as exc:
            # Only model and seed are on this form; any other field's problem is named by its JSON path.
            field = forms.form_field(getattr(exc, "field", "form"))
            if field in ("model", "seed"):
                errors = {field: forms.error_message(exc)}
            elif isinstance(exc, ImageError):
                errors = {"form": f"{exc.field}: {forms.rerun_image_message(exc.message)}"}
            else:
                errors = {"form": str(exc)}
        else:
            return RedirectResponse(views.job_url(new.id), status_code=303)
        return await self._job_page(job_id, 400, again=values, errors=errors)

    async def start_image(self, request: Request) -> Response:
        try:
            record = await self._record(request.path_params["job_id"])
        except JobNotFoundError:
            return error_page(404, "No such job", "There is no such job in the job log.")
        found = await run_in_threadpool(views.start_image, record.model_input)
        if found is None:
            return error_page(404, "No starting image", "This job's request has no image sent with it.")
        media_type, data = found
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"}
        return Response(data, media_type=media_type, headers=headers)

    # --- small JSON and streams --------------------------------------------------------------
    async def lint(self, request: Request) -> JSONResponse:
        values = {k: request.query_params.get(k, "") for k in ("prompt", "shots", "task", "duration", "model")}
        reply: dict = {"warnings": forms.lint(values)}
        previz = forms.previz(values)
        if previz:
            reply["previz"] = previz
        return JSONResponse(reply)

    async def events(self, request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:100]
        if not all(JOB_ID.fullmatch(i) for i in ids):
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
                            yield sse_event("job", payload)
                    if all(r.status.done for r in records) or (hub is not None and hub.stopping):
                        yield sse_event("end", {})
                        return
                    if wake is None:
                        await asyncio.sleep(POLL_S)
                    else:
                        try:
                            await asyncio.wait_for(wake.wait(), POLL_S * 15)
                        except asyncio.TimeoutError:
                            yield PING
                        wake.clear()
            finally:
                if wake is not None:
                    hub.unsubscribe(wake)

        return sse_response(stream())


def gallery_routes(runtime: Runtime, default_output: str | None = None, max_body: int | None = None) -> list[BaseRoute]:
    """The gallery's routes over ``runtime``; add them after the API's own routes.

    ``default_output``: where the forms' jobs go (the server's advertised default output; None:
    the local outputs folder). ``max_body``: the server's body limit, stated by the image field.
    """
    return Gallery(runtime, default_output, max_body).routes()


def _cursor(text: str) -> tuple[float, str] | None:
    t, _, job_id = text.partition(":")
    try:
        return (float(t), job_id) if JOB_ID.fullmatch(job_id) else None
    except ValueError:
        return None


def _quote(value: str) -> str:
    return quote(value, safe="")
