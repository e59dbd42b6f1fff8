"""One pure-ASGI middleware: request ids, the body-size limit, metrics and JSON access logs.

Pure ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not a task per request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from service.metrics import Metrics

access_logger = logging.getLogger("nareta.access")


async def _send_error(send, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestMiddleware:
    def __init__(self, app, *, max_body_bytes: int, metrics: Metrics, access_log: bool,
                 path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}  # exact path -> its own body-size limit
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        state = {"status": 500}
        limit = self.path_limits.get(scope.get("path", ""), self.max_body_bytes)
        too_big = (f"request body over {limit} bytes; "
                   "send a smaller body or split the request")

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit()
                                         or int(declared) > limit):
                state["status"] = 413
                await _send_error(send, 413, "TooBig", too_big, request_id)
                return
            downstream = receive
            if scope["method"] in ("POST", "PUT", "PATCH"):
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        state["status"] = 413
                        await _send_error(send, 413, "TooBig", too_big, request_id)
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                body = b"".join(chunks)
                replayed = False

                async def downstream():
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

            await self.app(scope, downstream, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, state["status"], seconds)
            if self.access_log:
                client = scope.get("client")
                access_logger.info(json.dumps({
                    "event": "request", "request_id": request_id, "method": scope["method"],
                    "path": scope["path"], "route": template, "status": state["status"],
                    "duration_ms": round(seconds * 1000, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                }))
