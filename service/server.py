"""uvicorn configuration: a TCP socket bound before serving, and uvicorn's HTTP protocol
(httptools, its C parser; h11 where httptools is missing) with a read timeout for request
heads."""

from __future__ import annotations

import asyncio
import json
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: the pure-Python h11 protocol only
    HttpToolsProtocol = None

from nareta.errors import InputError

DEFAULT_HEADER_TIMEOUT_S = 10.0


class TcpConfig(uvicorn.Config):
    """uvicorn binds the shared socket of its worker processes with protocol 0, so asyncio
    skips TCP_NODELAY on accepted connections and every response waits ~40 ms for a
    delayed ACK (Nagle). Binding it as an explicit TCP socket restores NODELAY.

    ``header_timeout_s`` is read by the protocol (``http=`` below): httptools' C parser
    (pure-Python h11 cost about a third of a route request's CPU in the service profile)."""

    def __init__(self, app, *, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **options):
        options.setdefault("http", "service.server:TimedHttpToolsProtocol"
                           if HttpToolsProtocol is not None
                           else "service.server:TimedH11Protocol")
        super().__init__(app, **options)
        self.header_timeout_s = header_timeout_s

    def bind_socket(self) -> socket.socket:
        return bind_tcp_socket(self.host, self.port)


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; InputError naming the address if it is
    taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


_TIMEOUT_BODY = json.dumps({"code": "RequestTimeout",
                            "message": "request head not received in time"}).encode()
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: " + str(len(_TIMEOUT_BODY)).encode()
                     + b"\r\n\r\n" + _TIMEOUT_BODY)


class _HeaderTimeout:
    """A header read timeout for uvicorn's HTTP protocols, which uvicorn lacks (its
    keep-alive timer stops at the first byte, so a client sending one header byte a second
    held a connection as long as it liked). A request's head must be complete within
    ``header_timeout_s`` of the connection opening or of the previous response; else the
    client gets 408 and the connection is closed. Bodies have their own timeout in
    :class:`service.middleware.RequestMiddleware`. Relies on the protocol's ``cycle`` (a
    new cycle per request head), ``cycle.response_complete``, ``on_response_complete`` and
    ``loop``, as both of uvicorn 0.54.0's protocols have them (pinned);
    ``tests/service/test_overload.py`` fails if they change."""

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                  self._header_timeout, self.cycle)

    def _header_timeout(self, cycle) -> None:
        self._header_timer = None
        # a new request head arrived (a new cycle), or the current one is still being
        # answered (its completion re-arms the timer): nothing to do
        if self.cycle is not cycle or (cycle is not None and not cycle.response_complete):
            return
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()


class TimedH11Protocol(_HeaderTimeout, H11Protocol):
    """uvicorn's h11 protocol with the header read timeout."""


if HttpToolsProtocol is not None:
    class TimedHttpToolsProtocol(_HeaderTimeout, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header read timeout."""
