"""Stop signals of ``serve``: SIGTERM/SIGINT handlers installed before the start, and the serve loop
that drains the processor within ``shutdown_timeout`` when one arrives."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_chatbot.processor.app import Processor

_log = logging.getLogger(__name__)


class StopSignals:
    """SIGTERM/SIGINT set ``event`` while installed. Installed *before* ``Processor.start()`` so that a
    signal during initdb or migrations stops the start in order (see ``Processor.start``) instead of
    killing the process with the embedded Postgres it just started left running."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received[0]).name if self.received else "stop"

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self.event.set()

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_until_signal(processor: Processor, timeout: float | None = None,
                     signals: StopSignals | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain (commit what is queued) and return 0. ``signals``: the
    handlers already installed before the start (else they are installed here)."""
    with contextlib.ExitStack() as stack:
        if signals is None:
            signals = stack.enter_context(StopSignals())
        while not signals.event.wait(1.0):
            pass
        _log.info("received %s: draining", signals.name)
        processor.shutdown(timeout if timeout is not None else processor.config.shutdown_timeout)
    return 0
