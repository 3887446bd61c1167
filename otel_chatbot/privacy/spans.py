"""The one type every detector returns: where a PII value sits in the text and what it is."""

from __future__ import annotations

from typing import NamedTuple


class Found(NamedTuple):
    """``text[start:end]`` is a value of ``kind`` (the marker label: EMAIL, PHONE, SSN, …)."""

    start: int
    end: int
    kind: str


def merge(found: list[Found]) -> list[Found]:
    """Sorted, non-overlapping spans: overlapping finds become one span with the longer find's kind."""
    if len(found) < 2:
        return found
    found.sort()
    out = [found[0]]
    for item in found[1:]:
        last = out[-1]
        if item.start < last.end:
            kind = last.kind if last.end - last.start >= item.end - item.start else item.kind
            out[-1] = Found(last.start, max(last.end, item.end), kind)
        else:
            out.append(item)
    return out
