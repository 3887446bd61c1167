"""Optional bearer-token check shared by the HTTP and gRPC receivers."""

from __future__ import annotations

import hmac


class BearerAuth:
    """``check(header)`` is True when auth is off or ``header`` is ``Bearer <token>``.

    The comparison is constant-time (hmac.compare_digest) so response timing does not leak how much
    of a guessed token was right.
    """

    __slots__ = ("_expected",)

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def check(self, header: str | bytes | None) -> bool:
        expected = self._expected
        if expected is None:
            return True
        if header is None:
            return False
        given = header.encode("utf-8", "replace") if isinstance(header, str) else header
        # The scheme is case-insensitive (RFC 7235); normalise it before the constant-time compare.
        if given[:7].lower() == b"bearer ":
            given = b"Bearer " + given[7:].strip()
        return hmac.compare_digest(given, expected)
