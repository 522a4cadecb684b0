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
import math
import re
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
    """Compact JSON bytes; ``ValueError`` for ``NaN`` and infinities, which JSON does not have."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# -- JSON from clients -------------------------------------------------------------------------

MAX_JSON_DEPTH = 128  # as serde_json's (Restate's) default recursion limit
# What a protocol message (an invoke request, a checkpoint) may nest: a value at the limit,
# inside the message's own few levels (commands, a command, a completion).
MAX_MESSAGE_DEPTH = MAX_JSON_DEPTH + 8


class JSONInputError(ValueError):
    """Bytes that are not JSON as RFC 8259 has it; the message says why."""


def _no_constant(name: str) -> Any:
    raise JSONInputError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"the number {text[:40]} is too large for a 64-bit float")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> JSON:
    """Parse JSON from a client, strictly: UTF-8, no ``NaN``/``Infinity``, no number too large
    for a float, no lone surrogate, at most ``max_depth`` levels deep (a protocol message that
    carries values: :data:`MAX_MESSAGE_DEPTH`). Anything else raises :class:`JSONInputError` (a
    ``ValueError``) saying what is wrong.

    >>> loads(b'{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads("NaN")
    Traceback (most recent call last):
    ...
    tarry.serde.JSONInputError: NaN is not a JSON number
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except JSONInputError:
        raise
    except RecursionError:
        raise JSONInputError(f"the JSON nests deeper than {max_depth} levels") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise JSONInputError("a number has more than 4300 digits") from None
        raise JSONInputError(str(exc)) from None
    if text.count("[") + text.count("{") > max_depth:
        problem = json_depth_problem(value, max_depth)
        if problem is not None:
            raise JSONInputError(problem)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise JSONInputError("a string holds a lone surrogate (\\uD800-\\uDFFF)") from None
    return value


def json_depth_problem(value: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` (plain JSON types) nests deeper than ``limit``, or ``None``; iterative, so
    it cannot itself run out of stack.

    >>> json_depth_problem([[[]]], 2)
    'the JSON nests deeper than 2 levels'
    >>> json_depth_problem({"a": [1, {"b": 2}]}, 3) is None
    True
    """
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return f"the JSON nests deeper than {limit} levels"
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return None


def encoding_problem(value: Any) -> str | None:
    """Why ``value`` (plain JSON types, as :func:`to_json` makes them) cannot be stored as JSON,
    or ``None``.

    >>> encoding_problem(float("inf"))
    'NaN and Infinity are not JSON numbers'
    >>> encoding_problem({1, 2}), encoding_problem([1, "a", None])
    ('Object of type set is not JSON serializable', None)
    """
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:
        if "Out of range float" in str(exc):
            return "NaN and Infinity are not JSON numbers"
        if "Circular reference" in str(exc):
            return "it contains itself"
        return str(exc)
    except TypeError as exc:
        return str(exc)
    except RecursionError:
        return f"it nests deeper than {MAX_JSON_DEPTH} levels"
    return json_depth_problem(value)


def type_hints_of(fn: typing.Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a handler function."""
    return get_type_hints(fn)


__all__ = [
    "JSON",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_DEPTH",
    "JSONInputError",
    "dumps",
    "encoding_problem",
    "from_json",
    "json_depth_problem",
    "loads",
    "schema_for",
    "to_json",
    "type_hints_of",
]
