"""What a request to the ingress says, read and checked before anything is stored: the path
as sent, the handler's input (JSON, sent as JSON, valid against its schema), the delay of a
send, the ``Idempotency-Key``, and whether an attach/output/lookup target can name anything."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from tarry.limits import MAX_ID_BYTES, delay_problem, shown, target_problem, too_long

from .durations import DurationError, parse_duration_ms
from .http_input import HttpError, check_json_content_type, parse_json
from .paths import ById, ByWorkflow, InvocationRef, Target
from .registry import HandlerEntry


def raw_path(request: Request) -> bytes | str:
    """The request's path as sent, still percent-encoded (so a key may hold an encoded ``/``);
    re-encoded from the decoded path where the server gives no raw one (Mangum)."""
    raw = request.scope.get("raw_path")
    return raw if raw else quote(request.scope.get("path", ""))


def decode_input(request: Request, body: bytes, entry: HandlerEntry) -> Any:
    """The handler's input from the body: JSON (sent as JSON: 415 otherwise), valid against
    its schema."""
    target = f"{entry.service['name']}/{entry.info['name']}"
    check_json_content_type(request, body, target)
    if entry.info["input_schema"] is None:
        if body.strip() not in (b"", b"null"):
            raise HttpError(400, f"{target} takes no input, but the request has a body")
        return None
    if not body.strip():
        value = None
        problem = entry.validation_error(None)
        if problem is not None:
            expected = entry.info["input_schema"] or {}
            what = expected.get("type") or expected.get("title") or "JSON input"
            raise HttpError(400, f"the request has no body; {target} expects {what}")
    else:
        value = parse_json(body)
    problem = entry.validation_error(value)
    if problem is not None:
        problem = problem if len(problem) <= 300 else problem[:299] + "…"  # it may quote it all
        raise HttpError(400, f"the input does not match the schema of {target}: {problem}")
    return value


def parse_delay(query: Mapping[str, str]) -> int | None:
    """The ``?delay=`` (humantime or ISO 8601) or older ``?delaySec=`` of a send, in ms: at
    most :data:`~tarry.limits.MAX_DELAY_MS` (100 years), the same on every store."""
    if "delay" in query:
        try:
            return parse_duration_ms(query["delay"])
        except DurationError as exc:
            raise HttpError(400, f"?delay={shown(query['delay'], 40)}: {exc}") from exc
    if "delaySec" in query:
        text = query["delaySec"].strip()
        try:
            if len(text) > 32 or not text.isascii():
                raise ValueError(text)
            seconds = float(text)
        except ValueError:
            message = f"delaySec must be a number of seconds, not {shown(text, 40)}"
            raise HttpError(400, message) from None
        problem = delay_problem(seconds * 1000)
        if problem is not None:
            raise HttpError(400, f"?delaySec={text}: {problem}")
        return int(seconds * 1000)
    return None


def idempotency_key_of(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (UTF-8, not empty, one of them), or ``None``."""
    values = request.headers.getlist("idempotency-key")
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, "send one Idempotency-Key header, not several")
    try:
        key = values[0].encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HttpError(400, "the Idempotency-Key header is not UTF-8") from None
    if not key.strip():
        raise HttpError(400, "the Idempotency-Key header is empty")
    return key


def request_hash(target: Target, value: Any) -> str:
    canonical = json.dumps([target.service, target.key, target.handler, value], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ref_problem(ref: InvocationRef) -> str | None:
    """Why ``ref`` cannot name an invocation (a part over the limits), or ``None``."""
    if isinstance(ref, ById):
        return too_long("invocation id", ref.invocation_id, MAX_ID_BYTES)
    if isinstance(ref, ByWorkflow):
        return target_problem(ref.service, "run", ref.key)
    return target_problem(ref.service, ref.handler, ref.key, ref.idempotency_key)


__all__ = [
    "decode_input",
    "idempotency_key_of",
    "parse_delay",
    "raw_path",
    "ref_problem",
    "request_hash",
]
