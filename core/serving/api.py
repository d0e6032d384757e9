"""A trained run as an HTTP service other programs can call (FastAPI on uvicorn).

    python -m core serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--allowed-host NAME ...]
    curl -F files=@cat.jpg -F files=@dog.jpg http://127.0.0.1:8000/v1/predict

Endpoints
---------
``POST /v1/predict``
    One or many photos as the multipart form field ``files``. Answers 200
    with a JSON list, one entry per file in the order sent, each exactly a
    ``python -m core predict`` line (``Prediction.to_json()``): ``{file,
    label, probabilities, ms, answer, abstained, ...}``, where ``abstained``
    is null when the model answered ``label`` and "unsure" or "unknown" when
    it did not (a class may be named "unsure": read ``abstained``, not
    ``answer``), or ``{file, error}`` for a file that is
    not a usable image (not an image, empty, truncated, too many pixels). A
    bad file never fails the other files of its request, and never the
    request.
``GET /healthz`` (and ``HEAD``)
    ``{status: "ok", run, classes, image_size, max_photos, max_bytes}``.
``GET /docs``, ``GET /openapi.json``
    FastAPI's generated OpenAPI page and schema.

Errors (JSON ``{"error": sentence, "code": name}``)
----------------------------------------------------
    400 no_files          no ``files`` field, or a part of it that is not a file (a text
                          value, or a part without a file name, as a browser sends
                          for an empty file input)
    400 bad_request       a body that is not a readable multipart form (no boundary, a
                          damaged part, a part's headers too long, text fields besides
                          the photos)
    400 unknown_host      a Host header the server was not started for (see below)
    404 not_found         no such path
    405 method_not_allowed
    408 request_timeout   headers or body slower than ServeLimits allows (a slow client)
    413 too_large         more bytes than PAWLAB_MAX_DROP_BYTES (refused from
                          Content-Length before reading, or while streaming)
    413 too_many_photos   more files than PAWLAB_MAX_DROP_PHOTOS (counted while the
                          body streams in, before the rest is read)
    415 not_multipart     a body that is not multipart/form-data
    500 internal          a fault of the server, never of a photo
    503 busy              more open connections than ServeLimits.max_connections

The limits are the Classify page's (core.config settings, core.data.images
check_drop); pixels per image are refused by the decoder, per file. The
model is loaded once, when the app is made; photos go through the page's own
Predictor (decode, calibrated probabilities, answer).

The event loop only moves bytes: the form is parsed as it streams in
(``PhotoForm``) and the photos are decoded and classified in worker threads,
where the Predictor batches concurrent requests into shared forward passes
(core.serving.inference.ModelBatcher). ``/healthz`` is answered on the loop
itself, so it stays fast while uploads and the model keep the cores busy.

Slow clients and strangers
--------------------------
The API has no authentication. It answers only requests whose Host header
names the server as it was started (``--host``, ``--allowed-host``, and the
loopback names localhost, 127.0.0.1, [::1]), so a web page cannot reach it
through a DNS name it controls (DNS rebinding). uvicorn lacks a deadline for a
request's headers and a connection cap that answers in JSON; GuardedH11Protocol
adds both, BodyLimit a deadline for the body (ServeLimits holds the numbers).
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.config import get_settings
from core.data.images import check_drop
from core.defaults import SERVE_HOST, SERVE_PORT
from core.runs.trust import Abstain
from core.serving.inference import Prediction, Predictor

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Bytes a multipart body may carry per file besides the photo (boundary, headers).
MULTIPART_OVERHEAD_PER_FILE = 1024
# A predict form holds photos; a few text fields are tolerated, thousands are an attack.
MAX_TEXT_FIELDS = 16
MAX_TEXT_FIELD_BYTES = 64 * 1024
# Host names that always mean this machine; --host and --allowed-host add to them.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Addresses that mean "every interface": no client calls a server by them.
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")  # noqa: S104 (compared with, never bound)


@dataclass(frozen=True)
class ServeLimits:
    """How long and how many: what keeps slow or many clients from taking the server."""

    header_timeout: float = 10.0  # seconds for a request's headers, from connecting or the last answer
    body_timeout: float = 120.0  # seconds for a request's body, from its first byte (200 MB at 1.7 MB/s)
    keep_alive: int = 5  # seconds an idle connection stays open after an answer (uvicorn's own)
    max_connections: int = 200  # open at once; the next is answered 503 and closed


log = logging.getLogger("pawlab.api")


class ErrorCode(StrEnum):
    NO_FILES = "no_files"
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    TOO_MANY_PHOTOS = "too_many_photos"
    NOT_MULTIPART = "not_multipart"
    UNKNOWN_HOST = "unknown_host"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    BUSY = "busy"
    INTERNAL = "internal"


# Starlette's own refusals, by status, as the API's codes.
STARLETTE_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


class ApiError(HTTPException):
    """A refused request: its HTTP status, a sentence for a person and a code for a program."""

    def __init__(self, status: int, code: ErrorCode, message: str):
        super().__init__(status_code=status, detail=message)
        self.code = code


class ErrorBody(BaseModel):
    error: str
    code: ErrorCode


class PredictionLine(BaseModel):
    """One file's answer; the same fields as a ``python -m core predict`` line."""

    model_config = ConfigDict(extra="allow")
    file: str
    label: str | None = Field(None, description="The most likely class, also when the model abstains.")
    probabilities: dict[str, float] | None = Field(None, description="Every class's calibrated probability.")
    ms: float | None = None
    answer: str | None = Field(
        None, description='The text a person reads: the class, or "unsure" / "unknown" (a class may carry those names).'
    )
    abstained: Abstain | None = Field(
        None,
        description='null when the model answered `label`; "unsure" (confidence below the run\'s threshold) or '
        '"unknown" (the photo looks like none of the training photos) when it did not. Read this, not `answer`.',
    )
    reason: str | None = Field(None, description="Why the model abstained, for a person.")
    error: str | None = Field(None, description="Why the file could not be classified; the other fields are absent.")


class Health(BaseModel):
    status: str
    run: str
    classes: list[str]
    image_size: int
    max_photos: int
    max_bytes: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 408, 413, 415, 500, 503)
}
# The form is read by the endpoint itself (to count files as they stream in), so its schema is given here.
PREDICT_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "one or more photos",
                        }
                    },
                }
            }
        },
    }
}


def create_app(
    run_dir: str | os.PathLike, allowed_hosts: Iterable[str] = (), limits: ServeLimits = ServeLimits()
) -> FastAPI:
    """The API for one run; its model is loaded now (RunNotReadyError when it has none).

    ``allowed_hosts``: the names clients may call it by besides the loopback names.
    """
    predictor = Predictor.from_run(run_dir)
    app = FastAPI(
        title=f"PawLab: {Path(run_dir).name}",
        version="1",
        description="Classify photos with a PawLab run. Limits and errors: see each operation.",
    )
    app.add_middleware(BodyLimit, body_timeout=limits.body_timeout)
    app.add_middleware(HostAllowList, hosts=allowed_hosts)  # the outermost: strangers get nothing else
    _add_error_handlers(app)

    # async: answered on the event loop itself, never queued behind the worker threads.
    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        settings = get_settings()
        return Health(
            status="ok",
            run=predictor.name,
            classes=predictor.classes,
            image_size=predictor.image_size,
            max_photos=settings.max_drop_photos,
            max_bytes=settings.max_drop_bytes,
        )

    # HEAD for load balancers and uptime checks; one documented operation is enough.
    app.add_api_route("/healthz", healthz, methods=["HEAD"], response_model=Health, include_in_schema=False)

    @app.post("/v1/predict", response_model=list[PredictionLine], responses=ERROR_RESPONSES, openapi_extra=PREDICT_FORM)
    async def predict(request: Request) -> JSONResponse:
        """Classify photos: one answer per file, in order; a bad file gets its own ``error``."""
        if not _is_multipart(request):
            raise ApiError(415, ErrorCode.NOT_MULTIPART, NOT_MULTIPART_SENTENCE)
        form = PhotoForm(request.headers["content-type"], get_settings().max_drop_photos)
        # The loop only gathers bytes; parsing, decoding and the model run in worker threads.
        unparsed = bytearray()
        async for chunk in request.stream():
            unparsed += chunk
            if len(unparsed) >= PARSE_EVERY_BYTES:
                await run_in_threadpool(form.write, bytes(unparsed))
                unparsed.clear()
        lines = await run_in_threadpool(_parse_and_classify, predictor, form, bytes(unparsed))
        return JSONResponse(lines)

    return app


def _parse_and_classify(predictor: Predictor, form: PhotoForm, rest: bytes) -> list[dict]:
    """The end of the body parsed, the drop checked, every photo answered: one worker thread's job."""
    photos = form.finish(rest)
    _check_limits([len(data) for _, data in photos])
    return [prediction.to_json() for prediction in classify(predictor, photos)]


# Bytes the event loop gathers before a worker thread parses them: the file count is
# checked that often while the body streams in, each hand-over costs a thread switch.
PARSE_EVERY_BYTES = 256 * 1024


@dataclass
class _Part:
    """One part of the form as it is parsed: its headers, then its bytes."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    field_name: str = ""
    filename: str | None = None  # None: a text field
    data: bytearray = field(default_factory=bytearray)


class PhotoForm:
    """A multipart/form-data body parsed as it streams in (python-multipart, called from worker
    threads, never on the event loop): the files of the field ``files``, as (file name, bytes).

    The limits are checked as the parts arrive, so file max_photos + 1 stops the parse (413
    too_many_photos) before the rest is read, and text fields beyond MAX_TEXT_FIELDS, or longer
    than MAX_TEXT_FIELD_BYTES, are a 400. Header names and file names are decoded with the form's
    charset (UTF-8 unless it says otherwise), latin-1 when they are not valid in it, as Starlette does.
    """

    def __init__(self, content_type: str, max_photos: int):
        from python_multipart.multipart import MultipartParser, parse_options_header

        _, options = parse_options_header(content_type)
        if b"boundary" not in options:
            raise _form_error("Missing boundary in multipart")
        charset = options.get(b"charset", b"utf-8").decode("latin-1")
        try:
            self.charset = codecs.lookup(charset).name
        except LookupError:
            self.charset = "latin-1"
        self.max_photos = max_photos
        self.parts: list[_Part] = []
        self._header_name, self._header_value = b"", b""
        self._files = self._fields = 0
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begins,
            "on_part_data": self._part_data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(options[b"boundary"], callbacks)

    def write(self, data: bytes) -> None:
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.write(data)
        except FormParserError:
            raise _form_error("Invalid multipart data") from None

    def finish(self, rest: bytes) -> list[tuple[str, bytes]]:
        """Parse the last bytes; the photos in order, or ApiError 400 no_files when there are none."""
        from python_multipart.exceptions import FormParserError

        self.write(rest)
        try:
            self._parser.finalize()
        except FormParserError:
            raise _form_error("Invalid multipart data") from None
        values = [part for part in self.parts if part.field_name == "files"]
        # A text value, and a part without a file name (a browser's empty file input), are not photos.
        if not values or any(part.filename is None for part in values):
            raise ApiError(400, ErrorCode.NO_FILES, "Send one or more photos in the form field 'files'.")
        return [(part.filename or f"photo {index + 1}", bytes(part.data)) for index, part in enumerate(values)]

    def _decode(self, value: bytes) -> str:
        try:
            return value.decode(self.charset)
        except UnicodeDecodeError:
            return value.decode("latin-1")

    def _part_begins(self) -> None:
        self.parts.append(_Part())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.filename is None and len(part.data) + end - start > MAX_TEXT_FIELD_BYTES:
            raise _form_error("Part exceeded maximum size")
        part.data += data[start:end]

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self.parts[-1].headers.append((self._header_name.lower(), self._header_value))
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        part = self.parts[-1]
        disposition = next((value for name, value in part.headers if name == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise _form_error('The Content-Disposition header field "name" must be provided')
        part.field_name = self._decode(options[b"name"])
        if b"filename" in options:
            self._files += 1
            if self._files > self.max_photos:
                raise _form_error("Too many files", self.max_photos)
            part.filename = self._decode(options[b"filename"])
        else:
            self._fields += 1
            if self._fields > MAX_TEXT_FIELDS:
                raise _form_error("Too many fields")


def _form_error(detail: str, max_photos: int = 0) -> ApiError:
    """Why a form was refused, as the API's error."""
    if detail.startswith("Too many files"):
        return ApiError(
            413,
            ErrorCode.TOO_MANY_PHOTOS,
            f"That is more than {max_photos} photos; PawLab classifies at most {max_photos} at a time.",
        )
    if detail.startswith("Too many fields") or "Part exceeded maximum size" in detail:
        return ApiError(
            400, ErrorCode.BAD_REQUEST, "The form holds text fields besides the photos; send only the field 'files'."
        )
    reason = detail.strip().rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    return ApiError(400, ErrorCode.BAD_REQUEST, f"The body is not a readable multipart form: {reason}.")


def _check_limits(sizes: list[int]) -> None:
    problem = check_drop(sizes)
    if problem is None:
        return
    code = ErrorCode.TOO_MANY_PHOTOS if len(sizes) > get_settings().max_drop_photos else ErrorCode.TOO_LARGE
    raise ApiError(413, code, problem)


def classify(predictor: Predictor, photos: list[tuple[str, bytes]]) -> list[Prediction]:
    """One batched call; if a file breaks the decoder in a way it does not name, each file alone."""
    try:
        return predictor.predict(photos)
    except Exception:  # a decoder fault on one odd file must not cost the others their answers
        log.exception("A batch failed; classifying its files one by one.")
    predictions = []
    for name, data in photos:
        try:
            predictions += predictor.predict([(name, data)])
        except Exception:
            log.exception("Could not classify %s.", name)
            predictions.append(Prediction(file=Path(name).name, error=f"{Path(name).name} could not be read."))
    return predictions


# --- limits and errors ---------------------------------------------------------------


class BodyLimit:
    """Refuse a request body larger than a drop may be, before or while it is read (413), or
    slower than ``body_timeout`` seconds from its first read (408)."""

    def __init__(self, app, body_timeout: float = ServeLimits.body_timeout):
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = get_settings()
        limit = settings.max_drop_bytes + settings.max_drop_photos * MULTIPART_OVERHEAD_PER_FILE
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(limit)(scope, receive, send)
        received = 0
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set on the first read
        body_done = False  # after the body, receive() waits for a disconnect: no deadline then

        async def counted_receive():
            nonlocal received, deadline, body_done
            if body_done:
                return await receive()
            deadline = deadline or loop.time() + self.body_timeout
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise ApiError(408, ErrorCode.REQUEST_TIMEOUT, _too_slow_sentence("body", self.body_timeout)) from None
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > limit:
                raise ApiError(413, ErrorCode.TOO_LARGE, _too_large_sentence(limit))
            return message

        await self.app(scope, counted_receive, send)


class HostAllowList:
    """Answer only requests whose Host header names this server (400 unknown_host otherwise):
    a page on a DNS name its author controls cannot point that name at 127.0.0.1 and call the API."""

    def __init__(self, app, hosts: Iterable[str] = ()):
        self.app = app
        self.hosts = frozenset(host_name(host) for host in (*LOOPBACK_NAMES, *hosts) if host not in WILDCARD_HOSTS)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host", "")
        if host_name(host) not in self.hosts:
            shown = host_name(host)[:100] or "(none)"
            sentence = f"This server does not answer to the host name {shown}; start it with --allowed-host {shown} to allow it."
            return await _error_response(400, ErrorCode.UNKNOWN_HOST, sentence)(scope, receive, send)
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """A Host header or --host value without its port, lower case: 'LocalHost:80' -> 'localhost',
    '[::1]:8000' and '::1' -> '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    if host.count(":") > 1:  # a bare IPv6 address, as --host takes it
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with what it lacks against slow and many clients: a deadline
    for each request's headers (uvicorn waits forever for them) and a cap on open connections,
    refused at once in the API's JSON (uvicorn's limit_concurrency answers in plain text, and
    only once a request's headers have arrived: a stalled connection holds a socket until then)."""

    limits = ServeLimits()
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, ErrorCode.BUSY, "The server has too many connections open; try again in a moment.")
            return
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers arrived
            self._stop_waiting()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle is cycle:  # no pipelined request started
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._headers_deadline = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            self._refuse(408, ErrorCode.REQUEST_TIMEOUT, _too_slow_sentence("headers", self.limits.header_timeout))

    def _refuse(self, status: int, code: ErrorCode, message: str) -> None:
        """Answer outside any request cycle (none started, or none will), and close."""
        self.logger.warning("%s: %s", self.client, message)
        self.transport.write(_raw_error_response(status, code, message))
        self.transport.close()


NOT_MULTIPART_SENTENCE = "Send the photos as multipart/form-data in the field 'files'."


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _too_large_sentence(limit: int) -> str:
    from core.data.download import format_size

    return f"The request is larger than {format_size(limit)}; send fewer or smaller photos."


def _too_slow_sentence(part: str, seconds: float) -> str:
    return f"The request's {part} took longer than {seconds:g} s to arrive; send it again, all at once."


def _too_large(limit: int) -> JSONResponse:
    return _error_response(413, ErrorCode.TOO_LARGE, _too_large_sentence(limit))


def _error_response(status: int, code: ErrorCode, message: str) -> JSONResponse:
    # A refused body may be half unread: close the connection rather than read the rest.
    return JSONResponse(
        ErrorBody(error=message, code=code).model_dump(),
        status_code=status,
        headers={"Connection": "close"} if status in (408, 413) else None,
    )


def _raw_error_response(status: int, code: ErrorCode, message: str) -> bytes:
    """The bytes of an error answer that closes the connection, for the protocol to write itself."""
    body = json.dumps(ErrorBody(error=message, code=code).model_dump(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _add_error_handlers(app: FastAPI) -> None:
    # Starlette's class, not FastAPI's subclass: the router's 404 and 405 are Starlette's.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if isinstance(error, ApiError):
            return _error_response(error.status_code, error.code, error.detail)
        return _error_response(error.status_code, *_starlette_error(request, error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        if not _is_multipart(request):
            return _error_response(415, ErrorCode.NOT_MULTIPART, NOT_MULTIPART_SENTENCE)
        return _error_response(
            400, ErrorCode.NO_FILES, "The field 'files' must hold photo files (multipart file parts)."
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("Internal error on %s", request.url.path)
        return _error_response(500, ErrorCode.INTERNAL, "The server failed; the photos were not the cause.")


def _starlette_error(request: Request, error: StarletteHTTPException) -> tuple[ErrorCode, str]:
    path = request.url.path[:200]
    if error.status_code == 404:
        return ErrorCode.NOT_FOUND, f"There is nothing at {path}; the API answers POST /v1/predict and GET /healthz."
    if error.status_code == 405:
        return ErrorCode.METHOD_NOT_ALLOWED, f"{path} does not answer {request.method}; see GET /docs."
    code = STARLETTE_CODES.get(
        error.status_code, ErrorCode.BAD_REQUEST if error.status_code < 500 else ErrorCode.INTERNAL
    )
    return code, f"{str(error.detail).rstrip('.')}."


# --- running it ----------------------------------------------------------------------


def serve(
    run_dir: str | os.PathLike,
    host: str = SERVE_HOST,
    port: int = SERVE_PORT,
    allowed_hosts: Iterable[str] = (),
    limits: ServeLimits = ServeLimits(),
) -> None:
    """Serve the run's API until interrupted (uvicorn, one process), answering to ``host``,
    ``allowed_hosts`` and the loopback names."""
    allowed_hosts = list(allowed_hosts)
    app = create_app(run_dir, allowed_hosts=[host, *allowed_hosts], limits=limits)
    if not is_loopback(host):
        warn_no_authentication(host, port, allowed_hosts)
    uvicorn.Server(server_config(app, host, port, limits)).run()


def server_config(app, host: str, port: int, limits: ServeLimits = ServeLimits()) -> uvicorn.Config:
    """uvicorn's settings for the API: its guarded protocol and keep-alive (tests serve with this too)."""
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        http=protocol,
        ws="none",  # the API has no websockets: an upgrade request is answered as plain HTTP
        timeout_keep_alive=limits.keep_alive,
    )


def is_loopback(host: str) -> bool:
    if host_name(host) == "localhost":
        return True
    try:
        return ipaddress.ip_address(host_name(host).strip("[]")).is_loopback
    except ValueError:  # a name other than localhost may resolve anywhere
        return False


def warn_no_authentication(host: str, port: int, allowed_hosts: list[str]) -> None:
    """One line on stderr for the person starting it, and the log's warning when a log is set up."""
    names = [*LOOPBACK_NAMES, *(name for name in (host, *allowed_hosts) if name not in WILDCARD_HOSTS)]
    sentence = (
        f"Serving on {host}:{port} with no authentication: anyone who can reach it can use the model, "
        f"by the host names {', '.join(dict.fromkeys(names))} (add the names clients use with --allowed-host)."
    )
    print(f"warning: {sentence}", file=sys.stderr, flush=True)
    if log.hasHandlers():
        log.warning(sentence)
