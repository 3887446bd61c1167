"""Listening sockets of the processor: binding them, TLS context, and bind failures turned into errors
that say what to change (a port in use, an address that is not this machine's, a privileged port)."""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

from otel_chatbot.processor.config import ConfigError, split_address


def _tls_context(files: tuple[Path, Path]) -> ssl.SSLContext:
    """The server-side TLS context of /metrics (uvicorn and grpcio load the same files themselves)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(files[0]), str(files[1]))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert_file: cannot load {str(files[0])!r} with tls_key_file "
                          f"{str(files[1])!r}: {exc}") from None
    return context


@contextlib.contextmanager
def _listening(key: str, address: str) -> Iterator[None]:
    """Turn a failed bind into an error that names the setting to change."""
    try:
        yield
    except (OSError, RuntimeError) as exc:  # grpcio reports a failed bind as RuntimeError or port 0
        raise ConfigError(bind_failure(key, address, exc)) from None


def bind_failure(key: str, address: str, exc: BaseException) -> str:
    """Why ``address`` cannot be listened on, in words that say what to do."""
    host, port = split_address(key, address)
    code = exc.errno if isinstance(exc, OSError) and exc.errno else _probe_bind(host, port)
    flag = "--" + key.replace("_", "-")
    if code == errno.EADDRNOTAVAIL:
        reason = (f"{host} is not an address of this machine (use 127.0.0.1, 0.0.0.0 or an address of one "
                  f"of its interfaces with {flag} HOST:PORT)")
    elif code == errno.EADDRINUSE:
        reason = f"port {port} is in use by another process (choose another with {flag} HOST:PORT)"
    elif code == errno.EACCES:
        reason = f"permission denied (ports below 1024 need privileges; choose another with {flag} HOST:PORT)"
    else:
        detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        reason = f"{detail} (choose another with {flag} HOST:PORT)"
    return f"{key}: cannot listen on {address}: {reason}"


def _probe_bind(host: str, port: int) -> int | None:
    """The errno a plain bind of ``host:port`` gets (grpcio's own error carries none), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
    except OSError as exc:
        return exc.errno
    return None


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket (port 0 → a free port); bind errors surface here, in start().

    ``reuse_port``: SO_REUSEPORT, so worker processes listen on one port and the kernel spreads the
    connections between them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
