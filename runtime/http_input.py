"""Reading what HTTP clients send the ingress and the admin API, refusing bad input with a
clear 4xx before anything is stored.

- **Errors** are ``{"code", "message"}`` JSON, also for a path no route serves (404), a method it
  does not take (405) and, should one slip through, a failure of the runtime itself (500, with
  no traceback: that goes to the log).
- **Bodies** are read up to a limit (413 past it).
- **JSON** is read strictly (:func:`tarry.serde.loads`): no ``NaN``/``Infinity``, no number too
  large for a float, UTF-8 only, at most 128 levels deep; 400 otherwise.
- **Paths** may hold any character once percent-decoded, line breaks too (:func:`any_line`).
- **Content type**: a JSON body says ``Content-Type: application/json`` (or a ``+json`` type;
  a ``charset``, if given, is ``utf-8``), or says nothing; any other type is refused with 415. An
  empty body needs no content type.
"""

from __future__ import annotations

import logging
import re
from email.message import Message
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tarry.serde import MAX_JSON_DEPTH, JSONInputError, loads

log = logging.getLogger("tarry.runtime")


def any_line(route: Route) -> Route:
    """``route`` with its ``{name:path}`` parameters matching line breaks too: Starlette's
    match any character but ``\\n``, so a key holding an encoded one (``%0A``) would be
    answered 404, as if nothing were served there.

    >>> any_line(Route("/{path:path}", lambda r: None)).path_regex.match("/K/a\\nb/put") is None
    False
    """
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route


class HttpError(Exception):
    """A request refused with ``status_code`` and ``message``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"code": status_code, "message": message}, status_code, headers=headers)


async def http_exception_response(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route for the path, a method the route does not take) as
    ``{"code", "message"}``."""
    assert isinstance(exc, HTTPException)
    messages = {
        404: f"nothing is served at {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def internal_error_response(request: Request, exc: Exception) -> Response:
    """A failure no route answered (a bug): 500 as ``{"code", "message"}``, never a traceback;
    the log has it."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "the runtime failed to answer this request; its log says why")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit():
        if int(declared) > limit:
            raise HttpError(413, f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise HttpError(400, "the client went away while sending the body") from exc
    return b"".join(chunks)


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` says JSON (UTF-8, if it names a charset).

    >>> [is_json_media_type(t) for t in ("application/json", "application/json; charset=UTF-8",
    ...  "application/problem+json", "text/plain", "application/json; charset=latin-1")]
    [True, True, True, False, False]
    """
    message = Message()
    message["content-type"] = content_type
    media = message.get_content_type()
    charset = message.get_param("charset")
    if isinstance(charset, str) and charset.lower() not in ("utf-8", "utf8"):
        return False
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def check_json_content_type(request: Request, body: bytes, what: str) -> None:
    """Refuse (415) a body sent as something other than JSON (see the module's docstring)."""
    content_type = request.headers.get("content-type")
    if content_type is None or not body.strip() or is_json_media_type(content_type):
        return
    raise HttpError(
        415,
        f"{what} takes JSON, but the body is sent as {content_type[:100]!r}: send it with "
        "Content-Type: application/json (curl --json)",
    )


def parse_json(body: bytes, what: str = "the body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``body`` as JSON, strictly; 400 saying why it is not."""
    try:
        return loads(body, max_depth)
    except JSONInputError as exc:
        raise HttpError(400, f"{what} is not valid JSON: {exc}") from None


async def read_json(
    request: Request, limit: int, what: str, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """The body as JSON (``None`` for an empty one), content type and all."""
    body = await read_body(request, limit)
    check_json_content_type(request, body, what)
    return parse_json(body, max_depth=max_depth) if body.strip() else None


__all__ = [
    "HttpError",
    "any_line",
    "check_json_content_type",
    "error_response",
    "http_exception_response",
    "internal_error_response",
    "is_json_media_type",
    "parse_json",
    "read_body",
    "read_json",
]
