"""Stable keyed tokens instead of markers: the same e-mail gives the same ``<EMAIL:7f3a09c2>``.

Analytics and failure clustering can then still see "same customer, same e-mail" without the value.
The token is an HMAC-SHA256 of the normalised value under a key the operator keeps secret; without
the key the value cannot be recovered or confirmed by hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

_MIN_KEY_BYTES: Final = 16
_SEPARATORS: Final = str.maketrans("", "", " -./()+")


def normalised(kind: str, value: str) -> str:
    """One spelling per value: case and separators do not make a new customer."""
    if kind in ("EMAIL", "NAME", "ADDRESS", "API_KEY", "TOKEN"):
        return " ".join(value.lower().split())
    return value.translate(_SEPARATORS).upper()


class Pseudonymiser:
    """``token(kind, value)`` → ``<KIND:hex>``; ``hex_chars`` of the HMAC (8 by default)."""

    def __init__(self, key: bytes | str, hex_chars: int = 8) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < _MIN_KEY_BYTES:
            raise ValueError(f"pseudonym key: at least {_MIN_KEY_BYTES} bytes are needed, got {len(raw)}")
        if not 4 <= hex_chars <= 64:
            raise ValueError(f"pseudonym hex_chars: expected 4..64, got {hex_chars}")
        self._key = raw
        self._chars = hex_chars

    def token(self, kind: str, value: str) -> str:
        message = f"{kind}\x00{normalised(kind, value)}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()[: self._chars]
        return f"<{kind}:{digest}>"
