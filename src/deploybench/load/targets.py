"""What the load generator drives: plain HTTP, the SageMaker runtime API, or a variant in-process.

A Target is plain picklable data (so --processes can ship it to workers); `open()` builds the
per-worker client inside the worker's event loop. A client's `send(payload)` returns the tuple
(error_class | None, end_time, bytes_received, server_timing_header | None): a tuple, not an
object, because it is on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp  # the fork server imports it once (runner._WORKER_MODULES): workers start with it loaded

Outcome = tuple[str | None, float, int, str | None]
PREFLIGHT_TIMEOUT_S = 3.0


class LoadError(RuntimeError):
    """The load test cannot run (bad target, unreachable endpoint, worker failure)."""


class TargetUnreachable(LoadError):
    """Nothing answers at the target's address: fail fast instead of hanging."""


class TargetClient(ABC):
    """One worker's connection pool to the target."""

    @abstractmethod
    async def send(self, payload: bytes) -> Outcome:
        """Send one request; never raises for request-level failures (they are error classes)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""


class Target(ABC):
    """Where the load goes. Subclasses hold plain data only, so they pickle to worker processes."""

    kind: str = "abstract"
    multiprocess: bool = True
    # whose CPU time tells if the client is the bottleneck: the event-loop thread, or the whole
    # process when the work happens in a thread pool (boto3 is CPU-heavy and holds the GIL)
    cpu_scope: str = "thread"

    def __init__(self, payloads: list[bytes]) -> None:
        if not payloads or any(not body for body in payloads):
            raise LoadError("payloads: need at least one non-empty payload")
        self.payloads = payloads

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description for the result file."""

    def preflight(self, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
        """Raise TargetUnreachable within seconds if the target cannot be reached."""
        return None

    @abstractmethod
    async def open(self, concurrency: int, timeout_s: float) -> TargetClient:
        """Build the client inside the running event loop of a worker."""

    def _payload_facts(self) -> dict[str, Any]:
        sizes = [len(body) for body in self.payloads]
        return {"payloads": len(sizes), "payload_bytes_mean": sum(sizes) / len(sizes)}


def check_tcp(host: str, port: int, timeout_s: float, what: str) -> None:
    """Open and close one TCP connection, so an unreachable endpoint fails in seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise TargetUnreachable(f"cannot connect to {what} ({host}:{port}): {exc}") from exc


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"url: expected http(s)://HOST[:PORT]/PATH, got {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


# ---------------------------------------------------------------- plain HTTP (aiohttp keep-alive)


class _HttpClient(TargetClient):
    def __init__(self, url: str, headers: dict[str, str], concurrency: int, timeout_s: float) -> None:
        self._url = url
        self._headers = headers
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, use_dns_cache=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        self._errors = (asyncio.TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientError, OSError)

    async def send(self, payload: bytes) -> Outcome:
        try:
            # a redirect is an answer the endpoint should not give: count it, never follow it
            async with self._session.post(
                self._url, data=payload, headers=self._headers, allow_redirects=False
            ) as resp:
                body = await resp.read()
                end = perf_counter()
                status = resp.status
                timing = resp.headers.get("Server-Timing")
        except self._errors as exc:
            return _classify_http_exception(exc), perf_counter(), 0, None
        if status >= 300:
            return f"http_{status}", end, len(body), timing
        return None, end, len(body), timing

    async def close(self) -> None:
        await self._session.close()


def _classify_http_exception(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return "connection"
    return "client_error"


class HttpTarget(Target):
    """POST each payload to a URL over keep-alive connections (aiohttp)."""

    kind = "http"

    def __init__(
        self, url: str, payloads: list[bytes], content_type: str = "image/jpeg", accept: str | None = None
    ) -> None:
        super().__init__(payloads)
        self.host, self.port = _host_port(url)
        self.url = url
        self.content_type = content_type
        self.accept = accept

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "content_type": self.content_type,
            "accept": self.accept,
            **self._payload_facts(),
        }

    def preflight(self, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
        check_tcp(self.host, self.port, timeout_s, self.url)

    async def open(self, concurrency: int, timeout_s: float) -> TargetClient:
        headers = {"Content-Type": self.content_type}
        if self.accept:
            headers["Accept"] = self.accept
        return _HttpClient(self.url, headers, concurrency, timeout_s)


# ---------------------------------------------------------------- threads: SageMaker runtime, in-process


class _ThreadClient(TargetClient):
    """Runs a blocking call in a pool sized to the concurrency; the call stamps its own end time."""

    def __init__(self, call: Callable[[bytes], Outcome], concurrency: int) -> None:
        self._call = call
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="load")
        self._loop = asyncio.get_running_loop()

    async def send(self, payload: bytes) -> Outcome:
        return await self._loop.run_in_executor(self._pool, self._call, payload)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class SageMakerTarget(Target):
    """boto3 `sagemaker-runtime` invoke_endpoint in a thread pool (real AWS credential chain)."""

    kind = "sagemaker"
    cpu_scope = "process"

    def __init__(
        self,
        endpoint_name: str,
        payloads: list[bytes],
        content_type: str = "image/jpeg",
        endpoint_url: str | None = None,
        region: str | None = None,
        accept: str | None = None,
    ) -> None:
        super().__init__(payloads)
        import boto3  # noqa: F401 - fails here, in the caller, when boto3 is missing

        if not endpoint_name:
            raise LoadError("sagemaker: endpoint name must not be empty")
        if endpoint_url:
            _host_port(endpoint_url)
        self.endpoint_name = endpoint_name
        self.content_type = content_type
        self.endpoint_url = endpoint_url
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if self.region is None and endpoint_url:
            self.region = "us-east-1"  # any region signs requests to a local endpoint
        self.accept = accept

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint_name": self.endpoint_name,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "content_type": self.content_type,
            **self._payload_facts(),
        }

    def preflight(self, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
        import boto3

        if self.endpoint_url:
            host, port = _host_port(self.endpoint_url)
            check_tcp(host, port, timeout_s, self.endpoint_url)
        if self.region is None:
            raise LoadError("sagemaker: no region (pass --region or set AWS_REGION)")
        if boto3.session.Session().get_credentials() is None:
            raise LoadError("sagemaker: no AWS credentials found (environment, ~/.aws, or instance role)")

    def make_client(self, concurrency: int, timeout_s: float) -> Any:
        """A botocore client with a connection per thread and no retries (retries would hide errors)."""
        import boto3
        from botocore.config import Config

        config = Config(
            max_pool_connections=max(10, concurrency),
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(timeout_s, 10.0),
            read_timeout=timeout_s,
            tcp_keepalive=True,
        )
        return boto3.session.Session().client(
            "sagemaker-runtime", region_name=self.region, endpoint_url=self.endpoint_url, config=config
        )

    async def open(self, concurrency: int, timeout_s: float) -> TargetClient:
        client = self.make_client(concurrency, timeout_s)
        extra = {"Accept": self.accept} if self.accept else {}
        name, content_type = self.endpoint_name, self.content_type

        def invoke(payload: bytes) -> Outcome:
            try:
                resp = client.invoke_endpoint(
                    EndpointName=name, Body=payload, ContentType=content_type, **extra
                )
                body = resp["Body"].read()
                end = perf_counter()
                timing = resp["ResponseMetadata"].get("HTTPHeaders", {}).get("server-timing")
            except Exception as exc:  # botocore raises many unrelated types; classify, never crash the run
                return _classify_boto_exception(exc), perf_counter(), 0, None
            return None, end, len(body), timing

        return _ThreadClient(invoke, concurrency)


def _classify_boto_exception(exc: BaseException) -> str:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        return f"http_{meta.get('HTTPStatusCode', 'unknown')}"
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return "timeout"
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectionError):
        return "connection"
    return f"client_{type(exc).__name__}"


class InProcessTarget(Target):
    """Call a variant directly (no HTTP): the ceiling the served numbers are compared with."""

    kind = "inprocess"
    multiprocess = False  # the callable usually holds a loaded model: it stays in this process

    def __init__(
        self, variant_predict: Callable[[bytes], object], payloads: list[bytes], label: str = ""
    ) -> None:
        super().__init__(payloads)
        self.predict = variant_predict
        self.label = label or getattr(variant_predict, "__qualname__", "callable")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "callable": self.label, **self._payload_facts()}

    async def open(self, concurrency: int, timeout_s: float) -> TargetClient:
        predict = self.predict

        def call(payload: bytes) -> Outcome:
            try:
                predict(payload)
            except Exception as exc:  # the variant's failure is a counted error, not a crashed run
                return f"exception_{type(exc).__name__}", perf_counter(), 0, None
            return None, perf_counter(), 0, None

        return _ThreadClient(call, concurrency)


# ---------------------------------------------------------------- KServe v2 (Triton's HTTP protocol)


def kserve_v2_body(
    image: bytes, input_name: str, output_name: str, top_k: int, header_bytes: int = 0
) -> tuple[bytes, int]:
    """One KServe v2 infer request with Triton's binary tensor extension: (body, JSON header length).

    The image is one BYTES element (4-byte little-endian length, then the bytes) of shape [1, 1];
    the answer asks for the top-k classes (Triton's classification extension) as JSON. The header is
    padded with spaces (valid JSON) to `header_bytes`, so every request carries the same header length.
    """
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(tensor)},
                }
            ],
            "outputs": [{"name": output_name, "parameters": {"classification": top_k, "binary_data": False}}],
        },
        separators=(",", ":"),
    ).encode()
    header = header.ljust(header_bytes)
    return header + tensor, len(header)


class KServeV2Target(HttpTarget):
    """POST each image to /v2/models/NAME/infer as a binary BYTES tensor (KServe v2 + Triton extension)."""

    kind = "kserve-v2"

    def __init__(
        self,
        base_url: str,
        model: str,
        payloads: list[bytes],
        input_name: str = "image",
        output_name: str = "logits",
        top_k: int = 5,
    ) -> None:
        Target.__init__(self, payloads)  # validates the raw images before they are wrapped
        widest = max(kserve_v2_body(p, input_name, output_name, top_k)[1] for p in payloads)
        bodies = [kserve_v2_body(p, input_name, output_name, top_k, widest)[0] for p in payloads]
        super().__init__(
            f"{base_url.rstrip('/')}/v2/models/{model}/infer", bodies, "application/octet-stream"
        )
        self.model, self.input_name, self.output_name, self.top_k = model, input_name, output_name, top_k
        self.header_bytes = widest

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.model,
            "input": self.input_name,
            "datatype": "BYTES",
            "binary_tensor_extension": True,
            "classification_top_k": self.top_k,
        }

    async def open(self, concurrency: int, timeout_s: float) -> TargetClient:
        headers = {
            "Content-Type": self.content_type,
            "Inference-Header-Content-Length": str(self.header_bytes),
        }
        return _HttpClient(self.url, headers, concurrency, timeout_s)
