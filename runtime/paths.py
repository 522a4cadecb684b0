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
tarry.runtime.paths.PathError: no service named 'Nope' is registered
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote


class PathError(Exception):
    """The path names nothing the ingress serves."""

    def __init__(self, message: str, status_code: int = 404) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Target:
    service: str
    key: str | None
    handler: str
    send: bool


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
    service = unquote(segments[0])
    kind = kind_of(service)
    if kind is None:
        raise PathError(f"no service named {service!r} is registered")
    rest = [unquote(s) for s in segments[1:]]
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


__all__ = ["PathError", "Target", "parse_invoke_path", "split_path"]
