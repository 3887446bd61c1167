"""Which items a quality command looks at: time bounds from the command line, deterministic sampling.

Sampling hashes the item's id, so a rerun with the same rate picks the same turns (and a higher rate
picks a superset): the judge's spend is predictable and skipped-as-judged works with sampling.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` → timedelta; ValueError saying the expected form."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 30m, 24h or 7d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time: a duration back from ``now`` (``7d``) or an ISO 8601 timestamp (UTC if no zone)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected a duration like 7d or 24h, or an ISO timestamp like "
                         f"2025-01-31T12:00:00Z, got {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_rate(text: str) -> float:
    """A sampling fraction in (0, 1] (``0.1``, ``1``) or a percentage (``10%``)."""
    raw = text.strip()
    try:
        rate = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"expected a fraction between 0 and 1 such as 0.1 (or 10%), got {text!r}") from None
    if not 0 < rate <= 1:
        raise ValueError(f"expected a fraction greater than 0 and at most 1, got {text!r}")
    return rate


def sampled(key: str, rate: float) -> bool:
    """True for a stable ``rate`` fraction of keys (the same keys every time)."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate
