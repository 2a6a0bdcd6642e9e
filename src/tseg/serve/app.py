"""The HTTP side of ``tseg serve``: a Starlette app over a ``SegmentService``.

    GET  /                  the page (page.html: no external assets, works offline)
    GET  /examples/NAME     a packaged example image
    POST /api/segment       JSON or multipart -> per expression: confidence, area, mask
    GET  /health            liveness and load
    GET  /openapi.json      the API's OpenAPI 3.1 description

Why Starlette and not FastAPI: the one endpoint takes JSON or multipart on the same path and
must read its body under a size cap and a deadline, after admission; FastAPI would derive the
OpenAPI document only for bodies it parses itself, so this endpoint would take the raw request
anyway, and FastAPI would add pydantic and a layer of dependency injection for nothing. The
OpenAPI document is written out in ``openapi.py`` and tested against real answers.

Each request to /api/segment first takes an admission slot (``SegmentService.try_admit``);
with none free its body is read and dropped (so the client reads the answer rather than a reset
connection) and it is answered 503 with Retry-After. Then the body is read under
``max_body`` (413) and ``body_timeout`` (408), and handed to a worker; past ``request_timeout``
the answer is 503 if no worker took it, 504 if the model was still running. Bad input is a 400
with a message; any other failure a 500 with its message, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..inputs import InputError
from .openapi import openapi
from .service import EXAMPLES, HERE, SegmentService

log = logging.getLogger("tseg.serve")
NO_STORE = {"Cache-Control": "no-store"}
DRAIN_CAP = 256_000_000  # larger bodies are not read to the end: the connection is closed


class BodyTooLarge(Exception):
    def __init__(self, close: bool) -> None:
        self.close = close  # the rest of the body was not read: close the connection


class BodyTimeout(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_body(receive: Any, limit: int, timeout: float, declared: int | None) -> bytes:
    """The request body, at most ``limit`` bytes, within ``timeout`` seconds.

    A larger body is read to its end and dropped (up to ``DRAIN_CAP``), so that the client,
    still sending, reads the 413 instead of a connection reset.
    """
    if declared is not None and declared > DRAIN_CAP:
        raise BodyTooLarge(close=True)

    async def go() -> bytes:
        parts: list[bytes] = []
        n = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone
            chunk = msg.get("body", b"")
            n += len(chunk)
            if n <= limit:
                parts.append(chunk)
            elif parts:
                parts = []
            if n > DRAIN_CAP:
                raise BodyTooLarge(close=True)
            if not msg.get("more_body", False):
                break
        if n > limit:
            raise BodyTooLarge(close=False)
        return b"".join(parts)

    try:
        return await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        raise BodyTimeout from None


async def drain(receive: Any, timeout: float, declared: int | None) -> bool:
    """Read and drop the body; False when it could not be (the connection must be closed)."""
    try:
        await read_body(receive, 0, timeout, declared)
    except BodyTooLarge as e:
        return not e.close
    except (BodyTimeout, ClientGone):
        return False
    return True


def error(status: int, message: str, close: bool = False, **headers: str) -> JSONResponse:
    h = {**NO_STORE, **{k.replace("_", "-"): v for k, v in headers.items()}}
    if close:
        h["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=h)


async def form_fields(scope: dict, body: bytes, max_part: int) -> list[tuple[str, Any]]:
    """A multipart body -> [(name, text or (filename, bytes))]; at most one file."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, replay).form(max_files=1, max_fields=16, max_part_size=max_part)
    except (HTTPException, MultiPartException) as e:
        detail = getattr(e, "detail", None) or getattr(e, "message", str(e))
        raise InputError(f"the multipart body could not be read: {detail}") from None
    try:
        out: list[tuple[str, Any]] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append((key, (value.filename or "upload", await value.read())))
            else:
                out.append((key, value))
        return out
    finally:
        await form.close()


def render_page(service: SegmentService) -> bytes:
    o = service.options
    buttons = "".join(
        f'<button type="button" data-name="{html.escape(n)}" title="{html.escape(n)}">'
        f'<img src="examples/{html.escape(n)}" alt="{html.escape(n)}"></button>'
        for n in service.examples
    )
    values = {
        "__MODEL__": html.escape(Path(service.name).name or service.name),
        "__BACKEND__": html.escape(service.backend),
        "__MAX_MB__": f"{o.max_bytes / 1e6:g}",
        "__MAX_PIXELS__": f"{o.max_pixels:,}",
        "__MAX_EXPRESSIONS__": str(o.max_expressions),
        "__MAX_BYTES__": str(o.max_bytes),
        # "</" cannot end the script element from inside a JSON string this way.
        "__EXAMPLES_JSON__": json.dumps(service.examples).replace("</", "<\\/"),
        "__EXAMPLES__": buttons,
    }
    text = (HERE / "page.html").read_text(encoding="utf-8")
    for k, v in values.items():
        text = text.replace(k, v)
    return text.encode("utf-8")


def build_app(service: SegmentService) -> Starlette:
    """The ASGI app; ``service`` holds the model, the worker pool and the limits."""
    o = service.options
    page = render_page(service)
    schema = openapi(o)
    max_part = 64_000

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=NO_STORE)

    async def example(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in service.examples:
            return error(404, f"no example {name[:80]!r}")
        return Response((EXAMPLES / name).read_bytes(), media_type="image/png")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse(service.health(), headers=NO_STORE)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(schema)

    async def segment(request: Request) -> Response:
        try:
            declared = int(request.headers["content-length"])
        except (KeyError, ValueError):
            declared = None  # chunked: counted as it arrives
        if not service.try_admit():
            wait = service.retry_after()
            kept = await drain(request.receive, o.body_timeout, declared)
            return error(
                503,
                f"the server is busy ({o.admitted} requests running or queued); retry in {wait} s",
                close=not kept,
                Retry_After=str(wait),
            )
        handed_over = False
        try:
            kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind not in ("application/json", "multipart/form-data"):
                kept = await drain(request.receive, o.body_timeout, declared)
                return error(
                    415,
                    f"send the request as application/json or multipart/form-data, "
                    f"not {kind[:60] or 'without a Content-Type'}",
                    close=not kept,
                )
            try:
                body = await read_body(request.receive, o.max_body, o.body_timeout, declared)
            except BodyTooLarge as e:
                return error(
                    413,
                    f"the upload is too large: the limit is {o.max_bytes / 1e6:g} MB",
                    close=e.close,
                )
            except BodyTimeout:
                return error(408, f"the body did not arrive within {o.body_timeout:g} s", True)
            except ClientGone:
                return Response(status_code=400)  # nobody is left to read it
            if kind == "application/json":
                job = partial(service.answer_json, body)
            else:
                job = partial(service.answer_form, await form_fields(request.scope, body, max_part))
            del body
            fut = service.submit(job)
            handed_over = True
            try:
                data = await asyncio.wait_for(asyncio.wrap_future(fut), o.request_timeout)
            except asyncio.TimeoutError:
                if fut.cancel():  # no worker had taken it
                    service.stats.timed_out += 1
                    wait = service.retry_after()
                    return error(
                        503,
                        f"no worker was free within {o.request_timeout:g} s; retry in {wait} s",
                        Retry_After=str(wait),
                    )
                if not fut.done():
                    service.stats.timed_out += 1
                    return error(504, f"the model took more than {o.request_timeout:g} s")
                data = fut.result()  # finished as the deadline passed
            service.stats.served += 1
            return Response(data, media_type="application/json", headers=NO_STORE)
        except InputError as e:
            return error(400, str(e))
        except Exception as e:  # noqa: BLE001 - keep serving; say what went wrong
            service.stats.failed += 1
            log.exception("segment failed")
            return error(500, f"the model failed on this input ({type(e).__name__}: {e})")
        finally:
            if not handed_over:
                service.release()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error(404, f"no page {request.url.path[:200]!r}")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path[:200]!r}")
        return error(exc.status_code, str(exc.detail))

    routes = [
        Route("/", index),
        Route("/index.html", index),
        Route("/examples/{name}", example),
        Route("/favicon.ico", favicon),
        Route("/health", health),
        Route("/openapi.json", openapi_json),
        Route("/api/segment", segment, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
