"""The status page as an ASGI app (Starlette): three read-only routes behind HTTP Basic.

  /                     the page (queue per line, chart, recent jobs, received faxes)
  /style.css            its style sheet (the CSP allows no inline style or script)
  /jobs/<id>/page1.png  page 1 of a job's TIFF; the id must be 16 hex digits

Every response, a refusal too, carries a strict Content-Security-Policy, nosniff and
frame-ancestors 'none'. There is no form and no action: nothing a forged request could do.
Each request opens the job store anew (SQLite in WAL mode: reading never blocks the daemon).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from faxmail.admin.context import Admin
from faxmail.web.chart import daily_chart
from faxmail.web.login import Logins, Throttle
from faxmail.web.thumbnail import NoThumbnail, page_one_png, servable_tiff
from faxmail.web.views import fax_dir, status_page

log = logging.getLogger("faxmail.web")

JOB_ID = re.compile(r"[0-9a-f]{16}")
REALM = "faxmail status"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

TEMPLATES = Environment(
    loader=PackageLoader("faxmail.web", "templates"),
    autoescape=True,  # every template, whatever its name: mail text is never markup
    auto_reload=False,
)
# Loaded (and compiled) when the module is imported, before `faxmail web` gives up root for
# asterisk.user: that user may not be able to read the interpreter's own lazily loaded files.
PAGE = TEMPLATES.get_template("page.html")
REFUSED = TEMPLATES.get_template("refused.html")
STYLE = (files("faxmail.web") / "static" / "style.css").read_bytes()


@dataclass(frozen=True)
class WebContext:
    logins: Logins
    open_admin: Callable[[str], Admin]  # a fresh store for each request, as that login
    throttle: Throttle = field(default_factory=Throttle)


def refusal(status: int, title: str, text: str, **headers: str) -> HTMLResponse:
    body = REFUSED.render(title=title, text=text)
    return HTMLResponse(body, status_code=status, headers=headers)


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        return response


class BasicLogin(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, logins: Logins, throttle: Throttle) -> None:
        super().__init__(app)
        self.logins = logins
        self.throttle = throttle

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        header = request.headers.get("authorization")
        client = request.client.host if request.client else "?"
        if header and self.throttle.blocked(client):
            return refusal(429, "Too many refused logins", "Try again in a minute.")
        # scrypt takes a fraction of a second (only for a header not seen yet): in a worker
        # thread, so a guesser cannot stall the other requests.
        user = await run_in_threadpool(self.logins.user, header)
        if user is None:
            if header:
                self.throttle.refused(client)
                log.warning(
                    "login refused for %r from %s", self.logins.claimed_name(header), client
                )
            return refusal(
                401,
                "Login required",
                "This page needs a login from settings web.users.",
                **{"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        request.state.user = user
        return await call_next(request)


def build_app(context: WebContext) -> Starlette:
    def page(request: Request) -> Response:
        user: str = request.state.user
        try:
            admin = context.open_admin(user)
        except (OSError, sqlite3.Error) as exc:
            log.error("cannot open the job store: %s", exc)
            return refusal(503, "Job store unavailable", "The job store cannot be read now.")
        try:
            status = status_page(admin)
        finally:
            admin.close()
        body = PAGE.render(page=status, chart=daily_chart(status.days), user=user)
        return HTMLResponse(body)

    def style(_: Request) -> Response:
        return Response(STYLE, media_type="text/css")

    def thumbnail(request: Request) -> Response:
        job_id = str(request.path_params["job_id"])
        if not JOB_ID.fullmatch(job_id):
            return refusal(404, "Not found", "No such job.")
        try:
            admin = context.open_admin(request.state.user)
        except (OSError, sqlite3.Error) as exc:
            log.error("cannot open the job store: %s", exc)
            return refusal(503, "Job store unavailable", "The job store cannot be read now.")
        try:
            job = admin.store.get(job_id)
            tiff = None if job is None else servable_tiff(job.tiff, fax_dir(admin))
        finally:
            admin.close()
        if tiff is None:
            return refusal(404, "Not found", "No page image for this job.")
        try:
            png = page_one_png(tiff)
        except NoThumbnail as exc:
            log.warning("no thumbnail for job %s: %s", job_id, exc)
            return refusal(404, "Not found", "No page image for this job.")
        # Page 1 of a job never changes; the login still guards it (private).
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    async def not_found(_: Request, __: Exception) -> Response:
        return refusal(404, "Not found", "There is no such page.")

    async def not_allowed(_: Request, __: Exception) -> Response:
        return refusal(405, "Read only", "This page offers no action.", Allow="GET, HEAD")

    return Starlette(
        exception_handlers={404: not_found, 405: not_allowed},
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/style.css", style, methods=["GET"]),
            Route("/jobs/{job_id}/page1.png", thumbnail, methods=["GET"]),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BasicLogin, logins=context.logins, throttle=context.throttle),
        ],
    )
