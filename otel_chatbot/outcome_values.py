"""What a business outcome may hold: its kind and the range of its value.

Shared by the SDK (``record_outcome`` refuses a bad outcome at the call), the processor (outcome spans
and log records, ``POST /v1/outcomes``) and ``stats``; imports nothing but the standard library.
"""

from __future__ import annotations

import math
from typing import Final

KINDS: Final = ("conversion", "lead", "csat", "nps")
# CSAT is a 1-5 rating, NPS a 0-10 score; conversions and leads may carry an amount or a score, or nothing.
RANGES: Final[dict[str, tuple[float, float]]] = {
    "csat": (1, 5), "nps": (0, 10), "conversion": (0, math.inf), "lead": (0, math.inf)}
MAX_LABEL_CHARS: Final = 128


def validate_outcome(kind: object, value: object) -> str | None:
    """Why (``kind``, ``value``) is not a valid outcome, or None when it is."""
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, got {kind!r}"
    if value is None:
        return f"{kind} needs a value" if kind in ("csat", "nps") else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"value must be a finite number, got {value!r}"
    low, high = RANGES[str(kind)]
    if not low <= value <= high:
        return f"{kind} value must be between {low:g} and {high:g}, got {value:g}"
    if kind == "nps" and value != int(value):
        return f"nps value must be a whole number 0-10, got {value:g}"
    return None
