"""The processor: database (embedded or given), migrations, writer pipeline, receivers, /metrics.

Shutdown order matters for "200 only after commit": intake closes first (new requests get 503), the
receivers stop accepting, the pipeline commits what it holds and resolves the waiting requests,
then the receivers finish answering them, and only then the database goes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, TypeVar

import psycopg
from prometheus_client import CollectorRegistry

from otel_chatbot.errors import StartCancelled
from otel_chatbot.processor.app_parts import Deadline, build_redactor, online_judge, sweep_interval
from otel_chatbot.processor.auth import BearerAuth
from otel_chatbot.processor.config import ConfigError, ProcessorConfig, split_address
from otel_chatbot.processor.database import embedded_for, grafana_hint, open_database
from otel_chatbot.processor.grpc_receiver import GrpcReceiver
from otel_chatbot.processor.http_receiver import HttpReceiver, ReadyCheck
from otel_chatbot.processor.inflight import InflightBytes
from otel_chatbot.processor.listeners import _listening, _tls_context
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.processor.metrics_http import MetricsServer
from otel_chatbot.processor.pipeline import Pipeline
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.processor.stop_signals import StopSignals, run_until_signal
from otel_chatbot.store.api_pool import ApiPool
from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.migrate import LATEST_VERSION, migrate
from otel_chatbot.store.pending_feedback import PendingFeedbackSweeper
from otel_chatbot.store.reader import ReaderRoleError, enable_reader_login
from otel_chatbot.store.retention_schedule import RetentionSchedule
from otel_chatbot.store.rollup_schedule import RollupSchedule
from otel_chatbot.store.writer import BatchWriter

# Importable from here as before the split: the serve command and the demo use them with Processor.
__all__ = ["Processor", "StopSignals", "embedded_for", "grafana_hint", "open_database", "run_until_signal",
           "sweep_interval"]

_log = logging.getLogger(__name__)
_READY_CONNECT_TIMEOUT_S = 3
_RETENTION_INTERVAL_S = 3600.0
T = TypeVar("T")


class Processor:
    """``start()`` returns when every listener is bound; ``shutdown()`` drains and is safe twice."""

    def __init__(self, config: ProcessorConfig, registry: CollectorRegistry | None = None, *,
                 metrics: ProcessorMetrics | None = None, serve_metrics: bool = True,
                 reuse_port: bool = False, fleet_ready: ReadyCheck | None = None) -> None:
        """The last four serve one worker of ``serve --workers N`` (processor/worker.py): metrics kept for
        the parent's /metrics instead of served here, listeners on ports shared with the other workers,
        and /readyz also asking whether the other workers are ready."""
        self.config = config
        self.metrics = metrics or ProcessorMetrics(registry, label_cap=config.label_cap)
        self._serve_metrics = serve_metrics
        self._reuse_port = reuse_port
        self._fleet_ready = fleet_ready
        self._embedded: EmbeddedPostgres | None = None
        self._url: str | None = None
        self._pipeline: Pipeline | None = None
        self._judge: Any = None  # the online judge (quality/online.py) when judge_sample_rate > 0
        self._http: HttpReceiver | None = None
        self._grpc: GrpcReceiver | None = None
        self._api_pool: ApiPool | None = None
        self._sweeper: PendingFeedbackSweeper | None = None
        self._metrics_server: MetricsServer | None = None
        self._metrics_address: tuple[str, int] | None = None
        self._retention: RetentionSchedule | None = None
        self._rollups: RollupSchedule | None = None
        self._cancel: threading.Event | None = None
        self._lock = threading.Lock()
        self._started = False

    # --- addresses -------------------------------------------------------------------------------
    @property
    def http_address(self) -> tuple[str, int]:
        return self._need(self._http).address

    @property
    def grpc_address(self) -> tuple[str, int]:
        return self._need(self._grpc).address

    @property
    def metrics_address(self) -> tuple[str, int]:
        return self._need(self._metrics_address)

    @property
    def database_url(self) -> str:
        return self._need(self._url)

    @property
    def pipeline(self) -> Pipeline:
        return self._need(self._pipeline)

    @property
    def retention(self) -> RetentionSchedule | None:
        """The retention schedule when retention_days > 0."""
        return self._retention

    @staticmethod
    def _need(value: T | None) -> T:
        if value is None:
            raise RuntimeError("the processor is not started")
        return value

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, cancel: threading.Event | None = None) -> None:
        """``cancel`` set during the start (a stop signal) raises StartCancelled at the next step;
        whatever was started by then — the embedded Postgres included — is stopped first."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._cancel = cancel
            try:
                self._start()
            except BaseException:
                self._stop(timeout=5.0)
                raise

    def _cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _step(self) -> None:
        if self._cancelled():
            raise StartCancelled("stopped during start")

    def _start(self) -> None:
        config = self.config
        try:
            prices = PriceTable.load(config.prices_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"prices_file: {exc}") from None
        tls_files = None
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            tls_files = (config.tls_cert_file, config.tls_key_file)
        tls = _tls_context(tls_files) if tls_files is not None else None
        # The server is recorded before it runs, so a cancelled or failed start stops it.
        self._embedded = embedded = embedded_for(config)
        self._url = embedded.start(self._cancelled) if embedded is not None else config.database_url
        assert self._url is not None
        self._step()
        if config.migrate:
            applied = migrate(self._url)
            if applied:
                _log.info("applied migrations %s", applied)
        if config.reader_password is not None:
            try:
                enable_reader_login(self._url, config.reader_password)
            except ReaderRoleError as exc:
                raise ConfigError(f"reader_password: {exc}") from None
        self._step()
        if config.retention_days > 0:
            self._retention = RetentionSchedule(self._url, config.retention_days,
                                                interval_s=_RETENTION_INTERVAL_S)
            self._retention.start()
        if config.rollup_interval > 0:
            self._rollups = RollupSchedule(self._url, interval_s=config.rollup_interval,
                                           on_run=self.metrics.rollup_run)
            self._rollups.start()
        auth = BearerAuth(config.auth_token)
        redact = build_redactor(config) if config.redact else None
        writers = [BatchWriter(self._url, pending_feedback_max=config.pending_feedback_max,
                               settle_seconds=config.turn_settle_seconds,
                               statement_timeout=config.statement_timeout,
                               span_storage=config.span_storage)
                   for _ in range(config.writers)]
        self._api_pool = ApiPool(self._url, max_size=config.api_pool_size,
                                 statement_timeout=config.statement_timeout)
        self._api_pool.start()
        self._sweeper = PendingFeedbackSweeper(
            self._api_pool.connection, max_age_s=config.pending_feedback_max_age,
            max_rows=config.pending_feedback_max, interval_s=sweep_interval(config.pending_feedback_max_age),
            on_expired=self.metrics.feedback_expired, on_outcomes_expired=self.metrics.outcomes_expired)
        self._sweeper.start()
        self._judge = online_judge(config, self._url, self.metrics, prices)
        self._pipeline = Pipeline(writers, self.metrics,
                                  queue_max_spans=config.queue_max_spans,
                                  write_batch_spans=config.write_batch_spans,
                                  on_commit=self._judge.offer if self._judge is not None else None)
        self._pipeline.start()
        self._step()

        host, port = split_address("metrics", config.metrics)
        if self._serve_metrics:
            self._metrics_server = MetricsServer(host, port, self.metrics.registry,
                                                 auth=auth if config.metrics_auth else None, tls=tls)
            with _listening("metrics", config.metrics):
                self._metrics_server.start()
            port = self._metrics_server.address[1]
        self._metrics_address = (host, port)

        inflight = InflightBytes(config.max_inflight_bytes)  # one budget for both receivers
        host, port = split_address("otlp_grpc", config.otlp_grpc)
        self._grpc = GrpcReceiver(host, port, self._pipeline, prices=prices, auth=auth,
                                  max_body_bytes=config.max_body_bytes, workers=config.grpc_workers,
                                  redact=redact, reuse_port=self._reuse_port, tls_files=tls_files,
                                  inflight=inflight, max_concurrent_rpcs=config.grpc_max_concurrent_rpcs,
                                  request_timeout=config.request_timeout)
        with _listening("otlp_grpc", config.otlp_grpc):
            self._grpc.start()
        self._step()
        host, port = split_address("otlp_http", config.otlp_http)
        self._http = HttpReceiver(host, port, self._pipeline, prices=prices, auth=auth,
                                  max_body_bytes=config.max_body_bytes, ready_check=self.readiness,
                                  turn_exists=self._api_pool.turn_exists, redact=redact,
                                  graceful_timeout=config.shutdown_timeout,
                                  cors_origins=config.cors_origin_list, inflight=inflight,
                                  extra_routes=[self._review_page()], reuse_port=self._reuse_port,
                                  health_public=config.health_public, tls_files=tls_files,
                                  request_timeout=config.request_timeout)
        with _listening("otlp_http", config.otlp_http):
            self._http.start()
        host, port = self._metrics_address
        metrics = f"{host}:{port}" if self._serve_metrics else "served by the supervisor"
        _log.info("otel-chatbot processor: OTLP/HTTP %s:%d, OTLP/gRPC %s:%d, metrics %s%s",
                  *self.http_address, *self.grpc_address, metrics, " (TLS)" if tls else "")

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        # One deadline for every stage (not ``timeout`` each in turn): SIGTERM is done within it.
        left = Deadline(timeout)
        pipeline, http, grpc_ = self._pipeline, self._http, self._grpc
        if pipeline is not None:
            pipeline.close_intake()
        if http is not None:
            # Requests still unanswered just before the deadline get 503 (the pipeline's drain and
            # its cancel of a stuck write come first, at 0.8 of what is left).
            http.stop_accepting(grace=left() * 0.9)
        grpc_stopped = grpc_.stop_accepting(left()) if grpc_ is not None else None
        if pipeline is not None:
            # Commits what is queued, resolves the waiting requests; keeps a little time for answering.
            pipeline.shutdown(left() * 0.8)
        # Intake is closed: the API's lookups can only end in a 503 now. Cancelling what still runs on
        # its pool (a lookup stuck on a lock) frees the threads the HTTP server waits for as it stops.
        if self._sweeper is not None:
            self._sweeper.shutdown(min(left(), 1.0))
        if self._api_pool is not None:
            self._api_pool.shutdown(min(left() * 0.5, 1.0))
        if http is not None:
            http.shutdown(left())
        if grpc_stopped is not None:
            grpc_stopped.wait(left())
        if grpc_ is not None:
            grpc_.shutdown(0)
        if self._judge is not None:
            self._judge.shutdown(min(left(), 5.0))
        if self._metrics_server is not None:
            with contextlib.suppress(Exception):
                self._metrics_server.shutdown()
        # What is left of the deadline (a retention run stuck on a lock is left behind: its thread is a
        # daemon, its statement ends with statement_timeout or with the process).
        if self._retention is not None:
            self._retention.shutdown(left())
        if self._rollups is not None:
            self._rollups.shutdown(left())
        if self._embedded is not None:
            self._embedded.shutdown()
        self._pipeline = self._http = self._grpc = self._metrics_server = self._embedded = None
        self._retention = self._rollups = None
        self._judge = None
        self._sweeper = self._api_pool = None

    # --- health ----------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): this process is (``local_readiness``) and, with workers, so are the others."""
        ready, reason = self.local_readiness()
        if ready and self._fleet_ready is not None:
            return self._fleet_ready()
        return ready, reason

    def local_readiness(self) -> tuple[bool, str]:
        """(ready, reason): the database answers, is migrated to LATEST_VERSION, the writer is up."""
        pipeline, pool = self._pipeline, self._api_pool
        if pipeline is None or pool is None:
            return False, "not started"
        try:
            version = pool.schema_version(_READY_CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            return False, f"database unreachable: {str(exc).strip()}"
        if version != LATEST_VERSION:
            return False, (f"database schema is at version {version}, expected {LATEST_VERSION}: "
                           "run `otel-chatbot migrate`")
        if pipeline.down_reason is not None:
            return False, f"writer not connected: {pipeline.down_reason}"
        if not pipeline.ready:
            return False, "shutting down"
        return True, "ready"

    def _review_page(self) -> Any:
        """The /ui mount: the review page reads and writes through the API's connection pool."""
        from otel_chatbot.ui.routes import ReviewPage
        from otel_chatbot.ui.session import UiAuth

        config = self.config
        auth = UiAuth(config.auth_token, config.ui_reviewer_password, config.ui_viewer_token)
        return ReviewPage(self._need(self._api_pool).connection, auth, config.span_storage).mount()


