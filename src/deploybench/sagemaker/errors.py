"""The one error-body builder of the server: the front, the workers and the handlers all answer with it.

What a client may read: the message of a ServeError (deploybench's own, written for clients), and
the message of an exception the handler author raised WITH an HTTP status (status_code / status /
http_status, as SageMaker's BaseInferenceToolkitError carries), since that is how a handler picks
its client's answer. Anything else (a KeyError in user code, numpy's text, a path) becomes a fixed
message naming only the exception's class; with --debug the body adds the detail and the traceback.
"""

from __future__ import annotations

import json
import math
import traceback
from typing import Any

JSON = "application/json"
LOADING_RETRY_MS = 1000  # Retry-After while no worker is ready (loading, or restarting after a crash)


class ServeError(Exception):
    """An error deploybench raises on purpose, with the HTTP status to answer.

    The message is shown to clients, so it never holds paths or foreign exception text; `detail`
    (shown with --debug only) may. `headers` go on the response (Retry-After, Connection: close).
    """

    def __init__(
        self,
        message: str,
        status_code: int = 500,
        *,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}


def retry_after(milliseconds: float) -> dict[str, str]:
    """Retry-After in whole seconds as RFC 9110 defines it (at least 1), plus Retry-After-Ms with the
    estimate itself (the millisecond convention of Azure OpenAI / the OpenAI clients)."""
    ms = max(1, math.ceil(milliseconds))
    return {"Retry-After": str(max(1, math.ceil(ms / 1000))), "Retry-After-Ms": str(ms)}


def declared_status(exc: BaseException) -> int | None:
    """The HTTP error status an exception carries (status_code / status / http_status), if any."""
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return None


def error_status(exc: BaseException) -> int:
    return declared_status(exc) or 500


def _carried_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # BaseInferenceToolkitError keeps it apart from args
    return message if isinstance(message, str) and message else str(exc) or type(exc).__name__


def client_message(exc: BaseException) -> str:
    """What the client reads about `exc` (see the module docstring for the rule)."""
    if isinstance(exc, ServeError):
        return str(exc)
    if declared_status(exc) is not None:
        return _carried_message(exc)
    return f"internal error ({type(exc).__name__}) while handling the request; --debug shows it"


def error_body(status: int, message: str, debug: dict[str, Any] | None = None) -> bytes:
    """{"error": message, "status": status}, plus the debug fields when given."""
    payload: dict[str, Any] = {"error": message, "status": status}
    if debug:
        payload.update(debug)
    return json.dumps(payload).encode()


def exception_body(exc: BaseException, debug: bool) -> tuple[int, bytes]:
    """(status, body) for an exception raised while handling one request."""
    status = error_status(exc)
    extra: dict[str, Any] | None = None
    if debug:
        extra = {"traceback": traceback.format_exception(exc)}
        if isinstance(exc, ServeError) and exc.detail:
            extra["detail"] = exc.detail
        elif not isinstance(exc, ServeError):
            extra["detail"] = f"{type(exc).__name__}: {exc}"
    return status, error_body(status, client_message(exc), extra)
