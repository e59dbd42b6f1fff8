"""One pure-ASGI middleware: request ids, the body-size limit and read timeout, load
shedding, metrics and JSON access logs.

Pure ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not a task per request.

Load shedding: at most ``max_in_flight`` requests are worked on at once in this process;
the next ones wait (a coroutine each, no thread) at most ``queue_timeout_s`` for a slot, in
arrival order, and at most ``max_queued`` of them; the others are answered 503
``Overloaded`` with ``Retry-After`` instead of queueing without bound (c=1000 gave a p99 of
4.3 s with nothing shed). The short wait matters: with an immediate 503, clients that retry
at once turned the server's time into answering 503s (answered requests fell from ~800/s to
~50/s at c=1000 in benchmarks/service.py); waiting, they are held back while the slots turn
over. The probes (``/health``, ``/ready``, ``/metrics``) are never shed. A request's body is
read here before it queues, under ``body_timeout_s``: a client trickling its body is cut off
with 408.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from service.metrics import Metrics

access_logger = logging.getLogger("nareta.access")

#: Paths that are never shed (probes and scrapes must answer under load).
UNSHED_PATHS = frozenset({"/health", "/ready", "/metrics"})


async def _send_error(send, status: int, code: str, message: str, request_id: str,
                      extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


class RequestMiddleware:
    def __init__(self, app, *, max_body_bytes: int, metrics: Metrics, access_log: bool,
                 max_in_flight: int = 64, max_queued: int = 1024,
                 queue_timeout_s: float = 0.5, body_timeout_s: float = 15.0,
                 retry_after_s: int = 1, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}  # exact path -> its own body-size limit
        self.metrics = metrics
        self.access_log = access_log
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.queued = 0  # touched only on the event loop: no lock needed
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop
        self.body_timeout_s = body_timeout_s
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        state = {"status": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message.setdefault("headers", [])
                extra = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                         for name, value in scope.get("state", {}).get(
                             "response_headers", {}).items()]
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode()), *extra]
            await send(message)

        async def refuse(status: int, code: str, message: str, *extra_headers) -> None:
            state["status"] = status
            await _send_error(send, status, code, message, request_id, extra_headers)

        counted = False
        try:
            downstream = await self._checked_body(scope, receive, headers, refuse)
            if downstream is None:
                return
            if scope["path"] not in UNSHED_PATHS:
                if not await self._acquire_slot():
                    self.metrics.shed.inc()
                    await refuse(503, "Overloaded",
                                 f"this server is working on {self.max_in_flight} requests "
                                 "and no slot freed in time; retry after the Retry-After "
                                 "seconds", (b"retry-after", self.retry_after))
                    return
                counted = True
                self.metrics.in_flight.inc()
            await self.app(scope, downstream, send_wrapper)
        finally:
            if counted:
                self._slots.release()
                self.metrics.in_flight.dec()
            self._record(scope, request_id, state["status"], time.perf_counter() - started)

    async def _checked_body(self, scope, receive, headers: dict, refuse):
        """The ``receive`` the app gets: for a body-carrying method, the body read here
        (under the size limit and ``body_timeout_s``) and replayed; None when the request
        was refused here (413, 408) or its client went away."""
        limit = self.path_limits.get(scope.get("path", ""), self.max_body_bytes)
        too_big = (f"request body over {limit} bytes; "
                   "send a smaller body or split the request")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit()
                                     or int(declared) > limit):
            await refuse(413, "TooBig", too_big)
            return None
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(receive, limit)
        except TimeoutError:
            self.metrics.body_timeouts.inc()
            await refuse(408, "RequestTimeout",
                         f"request body not received within {self.body_timeout_s:g} s",
                         (b"connection", b"close"))
            return None
        if body is None:  # client went away
            return None
        if len(body) > limit:
            await refuse(413, "TooBig", too_big)
            return None
        replayed = False

        async def downstream():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return downstream

    def _record(self, scope, request_id: str, status: int, seconds: float) -> None:
        """Metrics for the request and, when enabled, its JSON access-log line."""
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.observe(scope["method"], template, status, seconds)
        if self.access_log:
            client = scope.get("client")
            access_logger.info(json.dumps({
                "event": "request", "request_id": request_id,
                "method": scope["method"][:16], "path": scope["path"][:256],
                "route": template, "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            }))

    async def _acquire_slot(self) -> bool:
        """Take one of the ``max_in_flight`` slots, waiting at most ``queue_timeout_s``
        behind at most ``max_queued`` others; False: shed this request."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            # Yield once before working: endpoints that run on the event loop (the OSRM
            # route) finish without awaiting, so without this the requests waiting in the
            # loop's ready queue would never hold a slot or queue, and nothing would shed.
            await asyncio.sleep(0)
            return True
        if self.queued >= self.max_queued or self.queue_timeout_s <= 0:
            return False
        self.queued += 1
        self.metrics.queued.inc()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self._slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.queued -= 1
            self.metrics.queued.dec()

    async def _read_body(self, receive, limit: int) -> bytes | None:
        """The whole body (stops early, returning what it has, once it passes the size
        limit); ``None`` when the client disconnects."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                break
            more = message.get("more_body", False)
        return b"".join(chunks)
