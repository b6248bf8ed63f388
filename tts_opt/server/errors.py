"""Every failure a client sees, in OpenAI's error shape and with the status code OpenAI would use.

Handlers raise `APIError`; Litestar's own exceptions (routing, body size, validation) and the
runtime's errors are translated here, so no path answers in another shape or with a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from tts_opt.engines.base import EngineError
from tts_opt.errors import UserError
from tts_opt.runtime.executor import RunError
from tts_opt.runtime.prompts import PromptError
from tts_opt.server.protocol import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class SetupError(UserError, ValueError):
    """The server cannot start: the message names the file or setting at fault."""


class APIError(Exception):
    """An error response: HTTP status, OpenAI error body, extra headers (e.g. Retry-After).

    `profile` is the profile or model the request had resolved to, for the error metric.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        default_type = "invalid_request_error" if status < 500 else "server_error"
        self.body = ErrorBody(message, type or _TYPES.get(status, default_type), param, code)
        self.headers = dict(headers or {})
        self.profile = ""

    @property
    def kind(self) -> str:
        """Label of the error metric: the specific code where there is one."""
        return self.body.code or self.body.type

    def response(self) -> Response[bytes]:
        return Response(
            msgspec.json.encode(ErrorResponse(self.body)),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def not_ready() -> APIError:
    """A code of its own, so that alerts tell engines still loading from other server errors."""
    return APIError(
        503, "the engines are still loading", code="engines_loading", headers={"Retry-After": "5"}
    )


def model_not_found(name: str) -> APIError:
    message = f"The model `{name}` does not exist."
    return APIError(404, message, param="model", code="model_not_found")


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_exception(exc: BaseException, request: Request | None = None) -> APIError:
    """The client's view of an exception raised while serving a request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationException):
        return _validation_error(exc)
    if isinstance(exc, HTTPException):
        if exc.status_code in (404, 405) and request is not None:  # from routing
            return APIError(exc.status_code, f"Invalid URL ({request.method} {request.url.path})")
        if exc.status_code == 413:
            return APIError(
                413, "the request body is larger than the server allows", code="too_large"
            )
        return APIError(exc.status_code, exc.detail)
    if isinstance(exc, PromptError):
        return invalid(str(exc), param="messages")
    if isinstance(exc, ConnectionAbortedError):  # nobody reads it, but the metric counts it
        return APIError(499, "the client disconnected", code="client_disconnected")
    if isinstance(exc, TimeoutError):
        return APIError(
            504, "the request did not finish within the server's timeout", code="timeout"
        )
    if isinstance(exc, RunError | EngineError):
        return APIError(500, str(exc), code="engine_error")
    log.error("unexpected error while serving a request", exc_info=exc)
    return APIError(500, "internal server error")


def _validation_error(exc: ValidationException) -> APIError:
    """Litestar reports msgspec's message per field in `extra`; OpenAI puts it in `message`."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return invalid(exc.detail)
    first = problems[0]
    key = str(first.get("key", ""))
    if key == "data":  # the body as a whole: missing, or not a JSON object
        return invalid(f"the request body must be a JSON object ({first.get('message')})")
    return invalid(f"{first.get('message')} at `{key}`", param=key)


def exception_handlers(
    on_error: Callable[[APIError], None],
) -> dict[type[Exception], Callable[[Request, Exception], Response[bytes]]]:
    """App-level handlers (so 404/405 from routing are covered too); `on_error` counts them."""

    def handle(request: Request, exc: Exception) -> Response[bytes]:
        error = from_exception(exc, request)
        on_error(error)
        return error.response()

    return {Exception: handle}
