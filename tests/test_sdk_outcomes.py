"""The SDK's record_outcome refuses bad outcomes at the call (no span is sent for them)."""

from __future__ import annotations

import pytest

import otel_chatbot


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {"kind": "conversion"}, "give session_id or turn_id"),
    (("s-1", "refund"), {}, "kind must be one of conversion, lead, csat, nps, got 'refund'"),
    (("s-1", "csat"), {}, "csat needs a value"),
    (("s-1", "csat", 6), {}, "csat value must be between 1 and 5, got 6"),
    (("s-1", "nps", 7.5), {}, "nps value must be a whole number 0-10, got 7.5"),
    (("s-1", "conversion", -1), {}, "conversion value must be between 0 and inf, got -1"),
    (("s-1", "conversion", float("nan")), {}, "value must be a finite number"),
    (("s-1", "lead", True), {}, "value must be a finite number, got True"),
])
def test_bad_outcomes_raise_value_error(args: tuple[object, ...], kwargs: dict[str, object],
                                        message: str) -> None:
    with pytest.raises(ValueError, match="record_outcome: ") as info:
        otel_chatbot.record_outcome(*args, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
