"""A trained run as an HTTP service other programs can call (FastAPI on uvicorn).

    python -m core serve RUN_DIR [--host 127.0.0.1] [--port 8000]
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
``GET /healthz``
    ``{status: "ok", run, classes, image_size, max_photos, max_bytes}``.
``GET /docs``, ``GET /openapi.json``
    FastAPI's generated OpenAPI page and schema.

Errors (JSON ``{"error": sentence, "code": name}``)
----------------------------------------------------
    400 no_files          no ``files`` field, or a part of it that is not a file (a text
                          value, or a part without a file name, as a browser sends
                          for an empty file input)
    400 bad_request       a body that is not a readable multipart form
    413 too_large         more bytes than PAWLAB_MAX_DROP_BYTES (refused from
                          Content-Length before reading, or while streaming)
    413 too_many_photos   more files than PAWLAB_MAX_DROP_PHOTOS
    415 not_multipart     a body that is not multipart/form-data
    500 internal          a fault of the server, never of a photo

The limits are the Classify page's (core.config settings, core.data.images
check_drop); pixels per image are refused by the decoder, per file. The
model is loaded once, when the app is made; photos go through the page's own
Predictor (decode, calibrated probabilities, answer).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from core.config import get_settings
from core.data.images import check_drop
from core.runs.trust import Abstain
from core.serving.inference import Prediction, Predictor

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Bytes a multipart body may carry per file besides the photo (boundary, headers).
MULTIPART_OVERHEAD_PER_FILE = 1024

log = logging.getLogger("pawlab.api")


class ErrorCode(StrEnum):
    NO_FILES = "no_files"
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    TOO_MANY_PHOTOS = "too_many_photos"
    NOT_MULTIPART = "not_multipart"
    INTERNAL = "internal"


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 413, 415, 500)}


def create_app(run_dir: str | os.PathLike) -> FastAPI:
    """The API for one run; its model is loaded now (RunNotReadyError when it has none)."""
    predictor = Predictor.from_run(run_dir)
    app = FastAPI(
        title=f"PawLab: {Path(run_dir).name}",
        version="1",
        description="Classify photos with a PawLab run. Limits and errors: see each operation.",
    )
    app.add_middleware(BodyLimit)
    _add_error_handlers(app)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        settings = get_settings()
        return Health(
            status="ok",
            run=predictor.name,
            classes=predictor.classes,
            image_size=predictor.image_size,
            max_photos=settings.max_drop_photos,
            max_bytes=settings.max_drop_bytes,
        )

    @app.post("/v1/predict", response_model=list[PredictionLine], responses=ERROR_RESPONSES)
    def predict(request: Request, files: list[UploadFile] = File(default=[], description="one or more photos")):
        """Classify photos: one answer per file, in order; a bad file gets its own ``error``."""
        if not _is_multipart(request):
            raise ApiError(415, ErrorCode.NOT_MULTIPART, NOT_MULTIPART_SENTENCE)
        if not files:
            raise ApiError(400, ErrorCode.NO_FILES, "Send one or more photos in the form field 'files'.")
        photos = [(upload.filename or f"photo {index + 1}", upload.file.read()) for index, upload in enumerate(files)]
        _check_limits([len(data) for _, data in photos])
        return JSONResponse([prediction.to_json() for prediction in classify(predictor, photos)])

    return app


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
    """Refuse a request body larger than a drop may be, before or while it is read (413)."""

    def __init__(self, app):
        self.app = app

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

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, ErrorCode.TOO_LARGE, _too_large_sentence(limit))
            return message

        await self.app(scope, counted_receive, send)


NOT_MULTIPART_SENTENCE = "Send the photos as multipart/form-data in the field 'files'."


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _too_large_sentence(limit: int) -> str:
    from core.data.download import format_size

    return f"The request is larger than {format_size(limit)}; send fewer or smaller photos."


def _too_large(limit: int) -> JSONResponse:
    return _error_response(413, ErrorCode.TOO_LARGE, _too_large_sentence(limit))


def _error_response(status: int, code: ErrorCode, message: str) -> JSONResponse:
    # A refused body may be half unread: close the connection rather than read the rest.
    return JSONResponse(
        ErrorBody(error=message, code=code).model_dump(),
        status_code=status,
        headers={"Connection": "close"} if status == 413 else None,
    )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if isinstance(error, ApiError):
            return _error_response(error.status_code, error.code, error.detail)
        code = ErrorCode.BAD_REQUEST if error.status_code < 500 else ErrorCode.INTERNAL
        return _error_response(error.status_code, code, str(error.detail))

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


# --- running it ----------------------------------------------------------------------


def serve(run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the run's API until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(run_dir), host=host, port=port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    """``python -m core.serving.api RUN_DIR [--host H] [--port P]``."""
    from core.serving.inference import RunNotReadyError

    parser = argparse.ArgumentParser(prog="python -m core serve", description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve(args.run_dir, args.host, args.port)
    except (OSError, ValueError, RunNotReadyError) as error:
        print(f"Cannot serve {args.run_dir}: {error}", file=sys.stderr)
        return 1
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")


if __name__ == "__main__":
    sys.exit(main())
