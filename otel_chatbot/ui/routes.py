"""HTTP routes of the review page: login, review queue, turn list, conversation view, review form,
and the static files (stylesheet, feedback widget).

Access: a signed session cookie from ``/ui/login`` (or ``Authorization: Bearer`` for scripts that
only read). Reviewers may POST, viewers only read (403). Every POST form carries the CSRF token of
the session cookie. With no secret configured the page is open, but still CSRF-protected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from otel_chatbot.store.span_storage import DEFAULT_LAYOUT
from otel_chatbot.store.trace_fetch import span_reader
from otel_chatbot.ui import forms, queries
from otel_chatbot.ui.render import HTML_HEADERS, render
from otel_chatbot.ui.session import (
    COOKIE_NAME,
    LOCAL_REVIEWER,
    SESSION_SECONDS,
    Session,
    UiAuth,
    clean_name,
    csrf_matches,
)

_log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
_MAX_TURN_ID = 256
_LOGIN_FIELDS = frozenset({"csrf", "name", "secret", "next"})
_LOGOUT_FIELDS = frozenset({"csrf"})
_FAILED_LOGIN_DELAY_S = 0.5  # slows down guessing; the page answers other requests meanwhile
_RETRY_AFTER_S = 5


class DatabaseUnavailable(Exception):
    """The database did not answer; the page says so (503) instead of a bare 500."""


def _static(name: str) -> bytes:
    return files("otel_chatbot.ui").joinpath("static", name).read_bytes()


class ReviewPage:
    """The ``/ui`` mount. ``connect()`` opens (or borrows) an autocommit database connection."""

    def __init__(self, connect: Connect, auth: UiAuth, span_storage: str = DEFAULT_LAYOUT) -> None:
        self._connect = connect
        self._auth = auth
        self._spans = span_reader(span_storage)  # LLM calls of the conversation page
        self._widget = _static("widget.js")
        self._style = _static("style.css")

    def mount(self) -> Mount:
        guard = self._guard
        routes: list[BaseRoute] = [
            Route("/", guard(self._queue), methods=["GET"]),
            Route("/turns", guard(self._turns), methods=["GET"]),
            Route("/turn/{turn_id:path}", guard(self._conversation), methods=["GET"]),
            Route("/review", guard(self._review), methods=["POST"]),
            Route("/login", self._login_form, methods=["GET"]),
            Route("/login", self._login, methods=["POST"]),
            Route("/logout", self._logout, methods=["POST"]),
            Route("/widget.js", self._widget_js, methods=["GET"]),
            Route("/static/style.css", self._style_css, methods=["GET"]),
        ]
        return Mount("/ui", routes=routes)

    # --- plumbing --------------------------------------------------------------------------------
    async def _db(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        def run() -> T:
            with self._connect() as conn:
                return work(conn)

        try:
            return await asyncio.to_thread(run)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # pool timeouts included
            _log.warning("review page: database unavailable: %s", exc)
            raise DatabaseUnavailable from None

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except DatabaseUnavailable:
                session, _new = self._identify(request)
                response = self._error(request, session, 503,
                                       "the database is not answering; try again in a few seconds")
                response.headers["Retry-After"] = str(_RETRY_AFTER_S)
                return response

        return guarded

    def _identify(self, request: Request) -> tuple[Session | None, bool]:
        """(who is asking, whether to set a cookie for them). None: must log in."""
        session = self._auth.decode(request.cookies.get(COOKIE_NAME))
        if session is not None and session.role is not None:
            return session, False
        role = self._auth.bearer_role(request.headers.get("authorization"))
        if role is not None:  # a script with the token: may read; no CSRF token, so it cannot POST
            return Session("token", role, "", 0), False
        if self._auth.open:
            return self._auth.new_session(LOCAL_REVIEWER, "reviewer"), True
        return None, False

    def _page(self, request: Request, template: str, session: Session | None, *, status: int = 200,
              set_cookie: bool = False, **context: Any) -> Response:
        body = render(template, session=session, open=self._auth.open, **context)
        response = Response(body, status, HTML_HEADERS, media_type="text/html")
        if set_cookie and session is not None:
            self._set_cookie(request, response, session)
        return response

    def _set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE_NAME, self._auth.encode(session), max_age=SESSION_SECONDS, path="/ui",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")

    def _error(self, request: Request, session: Session | None, status: int, message: str) -> Response:
        return self._page(request, "error.html", session, status=status, status_code=status, message=message)

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/ui/login?next=" + quote(target, safe=""), 303)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    # --- pages -----------------------------------------------------------------------------------
    async def _queue(self, request: Request) -> Response:
        session, new = self._identify(request)
        if session is None:
            return self._to_login(request)
        try:
            window = forms.choice(request.query_params.get("window"), "window", forms.WINDOWS) \
                or forms.DEFAULT_WINDOW
        except forms.FormError as exc:
            return self._error(request, session, exc.status, str(exc))
        since = forms.window_start(window, self._now())

        def read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            queue, reviewed, total = queries.review_queue(conn, since)
            return {"queue": queue, "reviewed": reviewed, "total": total,
                    "reviews": queries.recent_reviews(conn)}

        data = await self._db(read)
        return self._page(request, "queue.html", session, set_cookie=new, window=window,
                          windows=list(forms.WINDOWS), **data)

    async def _turns(self, request: Request) -> Response:
        session, new = self._identify(request)
        if session is None:
            return self._to_login(request)
        try:
            filters, window = forms.filter_from_query(dict(request.query_params), self._now())
        except forms.FormError as exc:
            return self._error(request, session, exc.status, str(exc))

        def read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            services, sources = queries.filter_options(conn, filters.since)
            return {"turns": queries.list_turns(conn, filters), "services": services, "sources": sources}

        data = await self._db(read)
        return self._page(request, "turns.html", session, set_cookie=new, filters=filters, window=window,
                          windows=list(forms.WINDOWS), flags=queries.FLAGS, **data)

    async def _conversation(self, request: Request) -> Response:
        session, new = self._identify(request)
        if session is None:
            return self._to_login(request)
        turn_id = request.path_params["turn_id"]
        if not turn_id or len(turn_id) > _MAX_TURN_ID:
            return self._error(request, session, 400, f"turn id: 1 to {_MAX_TURN_ID} characters")
        since = forms.window_start(forms.DEFAULT_WINDOW, self._now())

        def read(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
            turns = queries.conversation(conn, turn_id, self._spans)
            if turns is None:
                return None
            position = queries.queue_position(conn, turn_id, since)
            return {"turns": turns, "position": position, "reviewed": position.reviewed,
                    "total": position.total,
                    "session_scores": queries.session_scores(conn, turns[0].turn["session_id"])}

        data = await self._db(read)
        if data is None:
            return self._error(request, session, 404, f"no turn with id {turn_id!r}")
        return self._page(request, "conversation.html", session, set_cookie=new, turn_id=turn_id,
                          saved=request.query_params.get("saved") == "1", **data)

    # --- review form -----------------------------------------------------------------------------
    async def _form(self, request: Request, fields: frozenset[str]) -> dict[str, str]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > forms.MAX_FORM_BYTES:
            raise forms.FormError(413, f"form of {length} bytes exceeds the limit of "
                                       f"{forms.MAX_FORM_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > forms.MAX_FORM_BYTES:
                raise forms.FormError(413, f"form exceeds the limit of {forms.MAX_FORM_BYTES} bytes")
        return forms.parse_form(bytes(body), request.headers.get("content-type", ""), fields)

    async def _review(self, request: Request) -> Response:
        session, _new = self._identify(request)
        if session is None:
            return self._to_login(request)
        if not session.can_review:
            return self._error(request, session, 403, "read-only access: viewers cannot store reviews")
        try:
            form = await self._form(request, forms.REVIEW_FIELDS | {"turn_id"})
            if not csrf_matches(session, form.get("csrf")):
                raise forms.FormError(403, "missing or wrong CSRF token: reload the page and submit again")
            turn_id = form.get("turn_id", "")
            if not turn_id or len(turn_id) > _MAX_TURN_ID:
                raise forms.FormError(400, f"turn_id: 1 to {_MAX_TURN_ID} characters")
            review = forms.review_from_form(form, turn_id, session.name or "unknown")
        except forms.FormError as exc:
            return self._error(request, session, exc.status, str(exc))
        since = forms.window_start(forms.DEFAULT_WINDOW, self._now())

        def write(conn: psycopg.Connection[Any]) -> queries.QueuePosition | None:
            if not queries.turn_known(conn, turn_id):
                return None
            queries.store_review(conn, review)
            return queries.queue_position(conn, turn_id, since)

        position = await self._db(write)
        if position is None:
            return self._error(request, session, 404, f"no turn with id {turn_id!r}")
        _log.info("review of turn %s stored by %s", turn_id, review.reviewer)
        target = turn_id
        if form.get("then") == "next" and position.next_unreviewed is not None:
            target = position.next_unreviewed
        return RedirectResponse("/ui/turn/" + quote(target, safe="") + "?saved=1", 303)

    # --- login -----------------------------------------------------------------------------------
    async def _login_form(self, request: Request) -> Response:
        session = self._auth.decode(request.cookies.get(COOKIE_NAME))
        new = session is None
        if session is None:  # a pre-login session: carries the CSRF token of the login form
            session = self._auth.new_session(None, None)
        return self._page(request, "login.html", session, set_cookie=new, message=None,
                          next=forms.safe_next(request.query_params.get("next")), name=session.name or "")

    async def _login(self, request: Request) -> Response:
        session = self._auth.decode(request.cookies.get(COOKIE_NAME))
        try:
            form = await self._form(request, _LOGIN_FIELDS)
            if not csrf_matches(session, form.get("csrf")):
                raise forms.FormError(403, "missing or wrong CSRF token: reload the login page")
        except forms.FormError as exc:
            return self._error(request, session, exc.status, str(exc))
        assert session is not None
        target = forms.safe_next(form.get("next"))
        name = clean_name(form.get("name", ""))
        if name is None:
            return self._page(request, "login.html", session, status=400, next=target,
                              name=form.get("name", "")[:80],
                              message="name: enter your name (1 to 80 printable characters)")
        role = "reviewer" if self._auth.open else self._auth.role_for(form.get("secret", ""))
        if role is None:
            await asyncio.sleep(_FAILED_LOGIN_DELAY_S)
            _log.warning("review page: failed login as %r", name)
            return self._page(request, "login.html", session, status=401, next=target, name=name,
                              message="wrong token or password")
        response = RedirectResponse(target, 303)
        self._set_cookie(request, response, self._auth.new_session(name, role))  # fresh CSRF token
        return response

    async def _logout(self, request: Request) -> Response:
        session = self._auth.decode(request.cookies.get(COOKIE_NAME))
        try:
            form = await self._form(request, _LOGOUT_FIELDS)
            if not csrf_matches(session, form.get("csrf")):
                raise forms.FormError(403, "missing or wrong CSRF token")
        except forms.FormError as exc:
            return self._error(request, session, exc.status, str(exc))
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(COOKIE_NAME, path="/ui", httponly=True, samesite="strict")
        return response

    # --- static ----------------------------------------------------------------------------------
    async def _widget_js(self, request: Request) -> Response:
        # Loaded by chat pages on other origins: allow that explicitly, cache briefly.
        return Response(self._widget, 200, {"Cache-Control": "public, max-age=300",
                                            "Cross-Origin-Resource-Policy": "cross-origin",
                                            "X-Content-Type-Options": "nosniff"},
                        media_type="text/javascript")

    async def _style_css(self, request: Request) -> Response:
        return Response(self._style, 200, {"Cache-Control": "public, max-age=300",
                                           "X-Content-Type-Options": "nosniff"}, media_type="text/css")
