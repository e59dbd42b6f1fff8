"""uvicorn configuration for several worker processes (``nareta serve --workers N``)."""

from __future__ import annotations

import socket

import uvicorn

from nareta.errors import InputError


class TcpConfig(uvicorn.Config):
    """uvicorn binds the shared socket of its worker processes with protocol 0, so asyncio
    skips TCP_NODELAY on accepted connections and every response waits ~40 ms for a
    delayed ACK (Nagle). Binding it as an explicit TCP socket restores NODELAY."""

    def bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise InputError(f"cannot listen on {self.host}:{self.port}: {exc}") from None
        sock.set_inheritable(True)
        return sock
