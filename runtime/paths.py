"""Reading ingress paths. Pure functions; the service kinds come from a lookup.

>>> kinds = {"Greeter": "service", "Counter": "object"}.get
>>> parse_invoke_path(["Greeter", "greet"], kinds)
Target(service='Greeter', key=None, handler='greet', send=False)
>>> parse_invoke_path(["Counter", "a", "add", "send"], kinds)
Target(service='Counter', key='a', handler='add', send=True)
>>> parse_invoke_path(["restate", "send", "Counter", "a%2Fb", "add"], kinds)
Target(service='Counter', key='a/b', handler='add', send=True)
>>> parse_invoke_path(["Nope", "x"], kinds)
Traceback (most recent call last):
...
tarry.runtime.paths.UnknownService: no service named 'Nope' is registered

Each segment is percent-decoded on its own, strictly: a ``%`` not followed by two hex digits,
or bytes that are not UTF-8, are refused (400) rather than passed through or replaced, so two
different raw keys are never the same object (``unquote`` makes both ``%ZZ`` and ``%25ZZ``
into ``%ZZ``, and every invalid byte into U+FFFD):

>>> parse_invoke_path(["Counter", "%25ZZ", "add"], kinds).key
'%ZZ'
>>> parse_invoke_path(["Counter", "%ZZ", "add"], kinds)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tarry.runtime.paths.PathError: the path has invalid percent-encoding in '%ZZ' (a % must be...
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from tarry.limits import shown


class PathError(Exception):
    """The path names nothing the ingress serves."""

    def __init__(self, message: str, status_code: int = 404) -> None:
        super().__init__(message)
        self.status_code = status_code


class UnknownService(PathError):
    """The path names a service nothing registered serves."""

    def __init__(self, service: str) -> None:
        super().__init__(f"no service named {shown(service)} is registered")
        self.service = service


@dataclass(frozen=True)
class Target:
    service: str
    key: str | None
    handler: str
    send: bool


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_segment(segment: str) -> str:
    """One path segment, percent-decoded strictly (see the module's docstring). ``segment``
    holds the raw bytes as :func:`split_path` gives them (one character a byte).

    >>> decode_segment("a%2Fb"), decode_segment("%C3%A9t%C3%A9"), decode_segment("\xc3\xa9")
    ('a/b', 'été', 'é')
    """
    if _BAD_ESCAPE.search(segment):
        raise PathError(
            f"the path has invalid percent-encoding in {shown(segment)} (a % must be followed "
            "by two hex digits; write a literal % as %25)",
            400,
        )
    try:
        raw = segment.encode("latin-1")
    except UnicodeEncodeError:
        raw = segment.encode("utf-8", "surrogatepass")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PathError(
            f"the path segment {shown(segment)} is not UTF-8 once percent-decoded", 400
        ) from None


def split_path(raw_path: bytes | str) -> list[str]:
    """Path segments, still percent-encoded (so a key may contain an encoded ``/``)."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    return [s for s in path.split("?", 1)[0].split("/") if s != ""]


def parse_invoke_path(segments: list[str], kind_of: Callable[[str], str | None]) -> Target:
    """The handler a ``POST`` path invokes.

    Forms: ``/{svc}/{handler}``, ``/{svc}/{key}/{handler}``, either followed by ``/send``; and
    ``/restate/call/...`` or ``/restate/send/...`` before either form.
    """
    send: bool | None = None
    if (
        len(segments) >= 2
        and segments[0] == "restate"
        and kind_of("restate") is None
        and segments[1] in ("call", "send")
    ):
        send = segments[1] == "send"
        segments = segments[2:]
    if not segments:
        raise PathError("the path names no service")
    service = decode_segment(segments[0])
    kind = kind_of(service)
    if kind is None:
        raise UnknownService(service)
    rest = [decode_segment(s) for s in segments[1:]]
    if send is None:
        send = (
            len(rest) >= 1 and rest[-1] == "send" and len(rest) == (3 if kind != "service" else 2)
        )
        if send:
            rest = rest[:-1]
    if kind == "service":
        if len(rest) != 1:
            raise PathError(f"{service} is a service: use /{service}/{{handler}}")
        return Target(service, None, rest[0], send)
    if len(rest) != 2:
        raise PathError(f"{service} is keyed: use /{service}/{{key}}/{{handler}}")
    return Target(service, rest[0], rest[1], send)


@dataclass(frozen=True)
class ById:
    invocation_id: str


@dataclass(frozen=True)
class ByIdempotencyKey:
    service: str
    key: str | None
    handler: str
    idempotency_key: str


@dataclass(frozen=True)
class ByWorkflow:
    service: str
    key: str


InvocationRef = ById | ByIdempotencyKey | ByWorkflow


@dataclass(frozen=True)
class ApiPath:
    """A request to the ingress's own API under ``/restate/``."""

    verb: str  # resolve, reject (awakeables); attach, output, lookup (invocations)
    awakeable_id: str | None = None
    ref: InvocationRef | None = None  # None: the POST form, the target is in the body


_RESULT_VERBS = ("attach", "output")


def parse_api_path(segments: list[str]) -> ApiPath | None:
    """The ingress API request a path names, or ``None`` if it names none (then it may be an
    invocation of a service called ``restate``).

    >>> parse_api_path(["restate", "a", "awk_1x", "resolve"])
    ApiPath(verb='resolve', awakeable_id='awk_1x', ref=None)
    >>> parse_api_path(["restate", "workflow", "Signup", "a%2Fb", "output"]).ref
    ByWorkflow(service='Signup', key='a/b')
    >>> parse_api_path(["restate", "invocation", "Greeter", "greet", "k1", "attach"]).ref
    ByIdempotencyKey(service='Greeter', key=None, handler='greet', idempotency_key='k1')
    """
    if len(segments) < 2 or segments[0] != "restate":
        return None
    parts = [decode_segment(s) for s in segments[1:]]
    head, rest = parts[0], parts[1:]
    if head in ("awakeables", "a") and len(rest) == 2 and rest[1] in ("resolve", "reject"):
        return ApiPath(rest[1], awakeable_id=rest[0])
    if head in ("attach", "output", "lookup") and not rest:
        return ApiPath(head)
    if head in _RESULT_VERBS and len(rest) == 1:
        return ApiPath(head, ref=ById(rest[0]))
    if not rest or rest[-1] not in _RESULT_VERBS:
        return None
    verb, args = rest[-1], rest[:-1]
    if head == "workflow" and len(args) == 2:
        return ApiPath(verb, ref=ByWorkflow(args[0], args[1]))
    if head == "invocation":
        if len(args) == 1:
            return ApiPath(verb, ref=ById(args[0]))
        if len(args) == 3:
            return ApiPath(verb, ref=ByIdempotencyKey(args[0], None, args[1], args[2]))
        if len(args) == 4:
            return ApiPath(verb, ref=ByIdempotencyKey(args[0], args[1], args[2], args[3]))
    return None


def parse_target(body: object) -> InvocationRef:
    """The invocation a ``POST /restate/attach|output|lookup`` body names, in Restate's form:
    ``{"target": "invocation", "invocationId"}``, ``{"target": "idempotentInvocation",
    "service", "key"?, "handler", "idempotencyKey"}`` or ``{"target": "workflow", "service"
    (or "name"), "key"}``.

    >>> parse_target({"target": "workflow", "name": "Registration", "key": "k"})
    ByWorkflow(service='Registration', key='k')
    """
    if not isinstance(body, dict):
        raise PathError("the body must be a JSON object naming a target", 400)

    def field(name: str, *aliases: str, required: bool = True) -> str | None:
        for candidate in (name, *aliases):
            value = body.get(candidate)
            if isinstance(value, str) and value:
                return value
        if required:
            raise PathError(f"the target needs {name!r} (a non-empty string)", 400)
        return None

    kind = body.get("target")
    if kind == "invocation":
        return ById(str(field("invocationId", "invocation_id", "id")))
    if kind == "idempotentInvocation":
        return ByIdempotencyKey(
            str(field("service")),
            field("key", required=False),
            str(field("handler")),
            str(field("idempotencyKey", "idempotency_key")),
        )
    if kind == "workflow":
        return ByWorkflow(str(field("service", "name")), str(field("key", "id")))
    raise PathError(
        "target must be 'invocation', 'idempotentInvocation' or 'workflow', "
        f"not {shown(kind) if isinstance(kind, str) else repr(kind)[:40]}", 400,
    )  # fmt: skip


__all__ = [
    "ApiPath",
    "ById",
    "ByIdempotencyKey",
    "ByWorkflow",
    "InvocationRef",
    "PathError",
    "Target",
    "decode_segment",
    "parse_api_path",
    "parse_invoke_path",
    "parse_target",
    "split_path",
]
