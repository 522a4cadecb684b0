"""JSON serialization and JSON schemas from type hints.

Handler inputs and outputs are JSON. Plain JSON types, dataclasses and TypedDicts work as
inputs and outputs; their type hints produce the JSON schema that discovery publishes.

>>> schema_for(int)
{'type': 'integer'}
>>> schema_for(list[str])
{'type': 'array', 'items': {'type': 'string'}}
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

JSON = Any  # a value json.dumps accepts

_NONE = type(None)


def schema_for(tp: Any) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) describing values of the type ``tp``."""
    if tp is Any or tp is object:
        return {}
    if tp is None or tp is _NONE:
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Union, types.UnionType):
        return {"anyOf": [schema_for(a) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [schema_for(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        return {"type": "array", "items": schema_for(args[0]) if args else {}}
    if origin is dict or tp is dict:
        return {"type": "object", "additionalProperties": schema_for(args[1]) if args else {}}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        fields = dataclasses.fields(tp)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return {
            "type": "object",
            "title": tp.__name__,
            "properties": {f.name: schema_for(hints[f.name]) for f in fields},
            "required": required,
        }
    if is_typeddict(tp):
        hints = get_type_hints(tp)
        return {
            "type": "object",
            "title": tp.__name__,
            "properties": {name: schema_for(h) for name, h in hints.items()},
            "required": sorted(getattr(tp, "__required_keys__", hints.keys())),
        }
    raise TypeError(f"tarry cannot describe the type {tp!r} as JSON")


def to_json(value: Any) -> JSON:
    """Turn a handler value (dataclasses included) into plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_json(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return value


def from_json(value: JSON, tp: Any) -> Any:
    """Build a value of type ``tp`` (dataclasses, containers of them) from plain JSON types."""
    if value is None or tp is Any or tp is None:
        return value
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            if arg is not _NONE and _matches(value, arg):
                return from_json(value, arg)
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, dict):
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: from_json(v, hints[k]) for k, v in value.items() if k in names})
    if origin is list and args and isinstance(value, list):
        return [from_json(v, args[0]) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: from_json(v, args[1]) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def _matches(value: JSON, tp: Any) -> bool:
    if dataclasses.is_dataclass(tp) or is_typeddict(tp) or get_origin(tp) is dict:
        return isinstance(value, dict)
    if get_origin(tp) is list or tp is list:
        return isinstance(value, list)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def dumps(value: JSON) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> JSON:
    return json.loads(data)


def type_hints_of(fn: typing.Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a handler function."""
    return get_type_hints(fn)


__all__ = ["JSON", "dumps", "from_json", "loads", "schema_for", "to_json", "type_hints_of"]
