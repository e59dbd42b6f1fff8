"""Mapping every failure to an :class:`~service.schemas.ErrorResponse` with a 4xx status.

Native routes answer 400 (bad value, no segment, no route), 401, 413 (too big) and 422
(malformed body); OSRM routes answer 400 for all of OSRM's codes, as OSRM does.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nareta.errors import InputError, NoRouteError, NoSegmentError, TooBigError

logger = logging.getLogger("nareta.service")
OSRM_PREFIXES = ("/route/", "/table/", "/nearest/")


class ServiceError(Exception):
    """An error with its HTTP status and OSRM-style code."""

    def __init__(self, status_code: int, code: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


def _is_osrm(request: Request) -> bool:
    return request.url.path.startswith(OSRM_PREFIXES)


def error_response(status_code: int, code: str, message: str, detail=None,
                   headers: dict[str, str] | None = None, report=None) -> JSONResponse:
    body = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    if report is not None:
        body["report"] = report
    return JSONResponse(body, status_code=status_code, headers=headers)


def _input_error(request: Request, exc: InputError) -> JSONResponse:
    if isinstance(exc, NoSegmentError):
        code, status = "NoSegment", 400
    elif isinstance(exc, NoRouteError):
        code, status = "NoRoute", 400
    elif isinstance(exc, TooBigError):
        code, status = "TooBig", 400 if _is_osrm(request) else 413
    else:
        code, status = "InvalidValue", 400
    return error_response(status, code, str(exc))


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        detail.append({"loc": loc, "msg": str(error.get("msg", "")),
                       "type": str(error.get("type", ""))})
    summary = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                        for item in detail[:5])
    if len(detail) > 5:
        summary += f"; and {len(detail) - 5} more"
    if _is_osrm(request):
        return error_response(400, "InvalidQuery", summary or "query string malformed")
    return error_response(422, "InvalidValue", summary or "request body malformed",
                          jsonable_encoder(detail))


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if _is_osrm(request) and exc.status_code == 404:
        return error_response(400, "InvalidUrl",
                              "URL string malformed: expected /route/v1/driving/{lon},{lat};"
                              "{lon},{lat}, /table/v1/driving/{coordinates} or "
                              "/nearest/v1/driving/{lon},{lat}")
    codes = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized", 413: "TooBig",
             503: "NotReady"}
    return error_response(exc.status_code, codes.get(exc.status_code, "HTTPError"),
                          str(exc.detail), headers=getattr(exc, "headers", None))


def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers,
                          report=getattr(exc, "report", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "InternalError", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _unexpected)


#: OpenAPI ``responses`` for the routes (so clients and fuzzers know the error shape).
def error_responses(*statuses: int) -> dict[int | str, dict]:
    from service.schemas import ErrorResponse

    described = {400: "invalid value, no segment near a point, or no route",
                 401: "missing or wrong API key", 409: "the served model takes no live "
                 "traffic", 413: "request too big",
                 422: "malformed request body",
                 503: "not ready, or overloaded (then with Retry-After)"}
    return {status: {"model": ErrorResponse, "description": described[status]}
            for status in statuses}
