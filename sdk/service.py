"""Service, VirtualObject and Workflow definitions, and their handler decorators.

>>> greeter = Service("Greeter")
>>> @greeter.handler()
... async def greet(ctx, name: str) -> str:
...     return f"Hello {name}!"
>>> greeter.handlers["greet"].input_schema
{'type': 'string'}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

from .limits import MAX_NAME_BYTES, shown, too_long
from .protocol import HandlerInfo, ServiceInfo
from .serde import schema_for, type_hints_of

F = TypeVar("F", bound=Callable[..., Any])

ServiceKind = Literal["service", "object", "workflow"]
HandlerKind = Literal["exclusive", "shared", "workflow"]

_ATTR = "__tarry_handler__"


@dataclass(frozen=True)
class HandlerDef:
    """One handler: its function, its kind and the types of its input and output."""

    service: str
    service_kind: ServiceKind
    name: str
    kind: HandlerKind
    fn: Callable[..., Any]
    takes_input: bool
    input_type: Any
    output_type: Any
    void_output: bool

    @property
    def input_schema(self) -> dict[str, Any] | None:
        return schema_for(self.input_type) if self.takes_input else None

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return None if self.void_output else schema_for(self.output_type)

    def info(self) -> HandlerInfo:
        return {
            "name": self.name,
            "kind": self.kind,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "void_output": self.void_output,
        }


def handler_def(target: Callable[..., Any]) -> HandlerDef:
    """The definition behind a decorated handler function."""
    found = getattr(target, _ATTR, None)
    if not isinstance(found, HandlerDef):
        raise TypeError(f"{target!r} is not a tarry handler (decorate it with @x.handler())")
    return found


class _Definition:
    kind: ServiceKind

    def __init__(self, name: str) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid service name {name!r}")
        problem = too_long("service name", name, MAX_NAME_BYTES)  # it goes into the store's keys
        if problem is not None:
            raise ValueError(f"{problem}: {shown(name, 40)}")
        self.name = name
        self.handlers: dict[str, HandlerDef] = {}

    def _add(self, fn: Callable[..., Any], name: str | None, kind: HandlerKind) -> HandlerDef:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {fn.__qualname__} must be an async function")
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(f"handler {fn.__qualname__} takes (ctx) or (ctx, input)")
        hints = type_hints_of(fn)
        takes_input = len(params) == 2
        output_type = hints.get("return", Any)
        definition = HandlerDef(
            service=self.name,
            service_kind=self.kind,
            name=name or fn.__name__,
            kind=kind,
            fn=fn,
            takes_input=takes_input,
            input_type=hints.get(params[1].name, Any) if takes_input else None,
            output_type=output_type,
            void_output=output_type is None or output_type is type(None),
        )
        if definition.name in self.handlers:
            raise ValueError(f"{self.name} already has a handler named {definition.name!r}")
        problem = too_long("handler name", definition.name, MAX_NAME_BYTES)
        if problem is not None:
            raise ValueError(f"{problem}: {self.name}/{shown(definition.name, 40)}")
        self.handlers[definition.name] = definition
        setattr(fn, _ATTR, definition)
        return definition

    def info(self) -> ServiceInfo:
        return {
            "name": self.name,
            "kind": self.kind,
            "handlers": [h.info() for h in self.handlers.values()],
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Service(_Definition):
    """Stateless handlers; any number run at once."""

    kind: ServiceKind = "service"

    def handler(self, name: str | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self._add(fn, name, "shared")
            return fn

        return register


class VirtualObject(_Definition):
    """Handlers keyed by an object key, with durable state per key. Exclusive handlers run one
    at a time per key (in arrival order); ``kind="shared"`` handlers run concurrently and read
    state only."""

    kind: ServiceKind = "object"

    def handler(
        self, name: str | None = None, kind: Literal["exclusive", "shared"] = "exclusive"
    ) -> Callable[[F], F]:
        if kind not in ("exclusive", "shared"):
            raise ValueError(f"an object handler is 'exclusive' or 'shared', not {kind!r}")

        def register(fn: F) -> F:
            self._add(fn, name, kind)
            return fn

        return register


class Workflow(_Definition):
    """A ``run`` handler that runs at most once per workflow key, plus shared handlers that can
    run while it does (to signal it or read its state)."""

    kind: ServiceKind = "workflow"

    def main(self, name: str = "run") -> Callable[[F], F]:
        """Decorate the workflow's ``run`` handler."""

        def register(fn: F) -> F:
            if any(h.kind == "workflow" for h in self.handlers.values()):
                raise ValueError(f"workflow {self.name} already has a run handler")
            self._add(fn, name, "workflow")
            return fn

        return register

    def handler(self, name: str | None = None) -> Callable[[F], F]:
        """Decorate a shared handler (a function named ``run`` becomes the run handler)."""

        def register(fn: F) -> F:
            if (name or fn.__name__) == "run":
                return self.main()(fn)
            self._add(fn, name, "shared")
            return fn

        return register


ServiceDefinition = Service | VirtualObject | Workflow


def services_in(module: ModuleType) -> list[ServiceDefinition]:
    """Every Service, VirtualObject and Workflow a module defines, in the order it made them."""
    return [v for v in vars(module).values() if isinstance(v, Service | VirtualObject | Workflow)]


__all__ = [
    "HandlerDef",
    "Service",
    "ServiceDefinition",
    "VirtualObject",
    "Workflow",
    "handler_def",
    "services_in",
]
