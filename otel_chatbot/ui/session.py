"""Who is looking at the review page: signed session cookies, login secrets, CSRF tokens.

A browser cannot send the bearer token by itself, so ``/ui/login`` trades it (or the reviewer
password, or the viewer token) for a session cookie: HttpOnly, SameSite=Strict, signed with HMAC so
that it cannot be forged or edited. The cookie also carries the CSRF token that every POST form must
echo back (double submit, checked in constant time). Pure functions plus one small class; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import orjson

Role = Literal["reviewer", "viewer"]
COOKIE_NAME = "otel_chatbot_ui"
SESSION_SECONDS = 12 * 3600
MAX_NAME = 80
# The reviewer name of sessions on an open page (no secret configured: a laptop).
LOCAL_REVIEWER = "local"


@dataclass(frozen=True, slots=True)
class Session:
    """A decoded cookie. ``role`` None: not logged in yet (the cookie only carries a CSRF token)."""

    name: str | None
    role: Role | None
    csrf: str
    issued: int

    @property
    def can_review(self) -> bool:
        return self.role == "reviewer"


class UiAuth:
    """Secrets of the review page and the signing key of its cookies.

    The key is derived from the configured secrets, so several processor replicas behind one load
    balancer accept each other's cookies, and changing a secret logs everybody out. With no secret
    configured the page is open and the key is random per process.
    """

    def __init__(self, auth_token: str | None, reviewer_password: str | None,
                 viewer_token: str | None) -> None:
        self._reviewer = [s.encode() for s in (auth_token, reviewer_password) if s]
        self._viewer = viewer_token.encode() if viewer_token else None
        material = b"\0".join(s.encode() for s in (auth_token, reviewer_password, viewer_token) if s)
        seed = material or os.urandom(32)
        self._key = hmac.new(seed, b"otel-chatbot review page session v1", hashlib.sha256).digest()

    @property
    def open(self) -> bool:
        """True when no reviewer secret is configured: anyone reaching the port may review."""
        return not self._reviewer

    def role_for(self, secret: str) -> Role | None:
        """The role a login secret grants (compared in constant time against each), else None."""
        given = secret.encode("utf-8", "replace")
        reviewer = any([hmac.compare_digest(given, s) for s in self._reviewer])  # no short-circuit
        viewer = self._viewer is not None and hmac.compare_digest(given, self._viewer)
        if reviewer:
            return "reviewer"
        return "viewer" if viewer else None

    def bearer_role(self, header: str | None) -> Role | None:
        """``Authorization: Bearer <secret>`` (a script reading the page) → role, else None."""
        if not header or header[:7].lower() != "bearer ":
            return None
        return self.role_for(header[7:].strip())

    # --- cookies ---------------------------------------------------------------------------------
    def new_session(self, name: str | None, role: Role | None) -> Session:
        return Session(name, role, secrets.token_urlsafe(24), int(time.time()))

    def encode(self, session: Session) -> str:
        payload = orjson.dumps({"n": session.name, "r": session.role, "c": session.csrf,
                                "t": session.issued})
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        return (body + b"." + self._sign(body)).decode("ascii")

    def decode(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged, edited or expired."""
        if not cookie or len(cookie) > 4096:
            return None
        body, _, signature = cookie.encode("ascii", "replace").rpartition(b".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
            name, role, csrf, issued = data["n"], data["r"], data["c"], int(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        if (now if now is not None else time.time()) - issued > SESSION_SECONDS:
            return None
        if role not in ("reviewer", "viewer", None) or not isinstance(csrf, str):
            return None
        return Session(name if isinstance(name, str) else None, role, csrf, issued)

    def _sign(self, body: bytes) -> bytes:
        digest = hmac.new(self._key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")


def csrf_matches(session: Session | None, submitted: str | None) -> bool:
    """The form's CSRF field equals the one in the signed cookie (constant-time compare)."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode("utf-8", "replace"))


def clean_name(raw: str) -> str | None:
    """A reviewer name as stored in turn_reviews: trimmed, printable, 1..MAX_NAME characters."""
    name = " ".join(raw.split())
    if not name or len(name) > MAX_NAME or not name.isprintable():
        return None
    return name
