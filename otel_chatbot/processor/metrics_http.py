"""The Prometheus ``/metrics`` listener: prometheus_client's WSGI app behind an optional bearer-token
check and optional TLS, in a small threaded server (what ``start_http_server`` does, plus auth)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from otel_chatbot.processor.auth import BearerAuth

_UNAUTHORISED = b"missing or invalid bearer token (Authorization: Bearer <token>)\n"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _with_auth(app: WsgiApp, auth: BearerAuth) -> WsgiApp:
    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not auth.check(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", "Bearer")])
            return [_UNAUTHORISED]
        return app(environ, start_response)

    return checked


class MetricsServer:
    """``start()`` binds (port 0: any free one, see ``address``); ``shutdown()`` is safe twice."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, *, auth: BearerAuth | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self._bind = (host, port)
        self._registry = registry
        self._auth = auth
        self._tls = tls
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            return
        app: WsgiApp = make_wsgi_app(self._registry)
        if self._auth is not None and self._auth.enabled:
            app = _with_auth(app, self._auth)
        host, port = self._bind

        class Server(_ThreadingServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        server = make_server(host, port, app, Server, handler_class=_QuietHandler)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll: shutdown() waits for the next one, and SIGTERM has a deadline.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="otel-chatbot-metrics", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5)
