"""The `context` a SageMaker handler function receives, shaped like TorchServe's ts.context.Context.

SageMaker's PyTorch container runs handlers inside TorchServe, so handlers written for it read
`context.system_properties["model_dir"]`, `context.get_request_header(0, "X-Amzn-SageMaker-Custom-
Attributes")`, `context.request_processor[0].get_request_properties()` and answer headers with
`context.set_response_header(0, name, value)`. The same calls work here. Requests reach handler
functions one at a time, so index 0 is always the current request.
"""

from __future__ import annotations

import threading
from typing import Any

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookup (HTTP names are; uvicorn hands them lower-cased)."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__({k.lower(): v for k, v in (headers or {}).items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class RequestProcessor:
    """One request's headers in, and the status and headers the handler sets for its answer."""

    def __init__(self, request_header: dict[str, str] | None = None) -> None:
        self._request_header = Headers(request_header)
        self._response_header: dict[str, str] = {}
        self._status_code: int | None = None
        self._reason_phrase: str | None = None

    def get_request_property(self, key: str) -> str | None:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, str]:
        return self._request_header

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code, self._reason_phrase = code, reason_phrase

    def get_response_status_code(self) -> int | None:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase


class HandlerContext:
    """What TorchServe's Context offers a handler, plus the request's content type and accept."""

    def __init__(self, model_dir: str, worker_index: int, batch_size: int = 1) -> None:
        self.model_dir = model_dir
        self.worker_index = worker_index
        self.model_name = "model"  # the name SageMaker's PyTorch container registers the model under
        self.manifest: dict[str, Any] = {}
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": batch_size,
            "server_name": "deploybench",
            "server_version": None,
            "limit_max_image_pixels": True,
        }
        # The current request's state, per thread: with dynamic batching behind a per-request handler
        # (serve/gather.py) the requests of a batch run at once, each in its own thread.
        self._current = threading.local()

    @property
    def request_ids(self) -> dict[int, str] | None:
        return getattr(self._current, "request_ids", None)

    @property
    def request_processor(self) -> list[RequestProcessor]:
        return getattr(self._current, "request_processor", [])

    @property
    def request_content_type(self) -> str | None:
        return getattr(self._current, "content_type", None)

    @property
    def accept(self) -> str:
        return getattr(self._current, "accept", "")

    def begin(self, rid: int, headers: dict[str, str] | None, content_type: str | None, accept: str) -> None:
        """Point the context at the next request."""
        current = self._current
        current.request_ids = {0: str(rid)}
        current.request_processor = [RequestProcessor(headers)]
        current.content_type, current.accept = content_type, accept

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_request_properties()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.request_processor[idx].report_status(code, phrase)

    def response_status(self) -> int | None:
        """The status the handler set for the current request, if it set one."""
        return self.request_processor[0].get_response_status_code() if self.request_processor else None

    def response_headers(self) -> dict[str, str] | None:
        """Headers the handler set for the current request (None when it set none)."""
        if not self.request_processor:
            return None
        return dict(self.request_processor[0].get_response_headers()) or None
