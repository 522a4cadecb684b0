"""What an HTTP checkpoint (:class:`tarry.protocol.CheckpointAppend`) must look like before the
store sees it: a token proves which attempt is appending, not that its body is well formed, and
a malformed one must be refused (400) with nothing stored, not half-applied or left to fail in
the store (which the attempt would retry for ever).

The shape of every command kind is a JSON schema (checked with jsonschema); what a schema cannot
say (sizes in UTF-8 bytes, values that must be JSON) is :func:`tarry.limits.command_problem`'s,
the same checks the SDK makes when a handler records the command; and completions must name
entries of the journal as it is after the append.

>>> run = {"kind": "run", "name": "a"}
>>> checkpoint_problem({"commands": [run], "completions": {"1": {"value": 1}}}, 1)
>>> checkpoint_problem({"commands": [], "completions": {"5": {"value": 1}}}, 1)
'completion 5 names no entry of the journal (it has entries 1 to 0 for new results)'
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from tarry.limits import command_problem

_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_FAILURE = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "minimum": 0}, "message": _STR,
        "interrupted": {"type": "boolean"},  # an at-most-once run's body may have run
    },
}  # fmt: skip
_COMPLETION = {
    "type": "object",
    "properties": {"value": True, "failure": _FAILURE},
    "additionalProperties": False,
    "oneOf": [{"required": ["value"]}, {"required": ["failure"]}],
}
_CALL = {
    "required": ["service", "handler", "invocation_id"],
    "properties": {
        "service": _STR, "handler": _STR, "key": _STR_OR_NULL, "arg": True,
        "invocation_id": _STR, "idempotency_key": _STR_OR_NULL,
        "headers": {"type": "object", "additionalProperties": _STR},
        "delay_ms": {"type": "integer", "minimum": 0},
    },
}  # fmt: skip
# What each kind needs beyond "kind" (and a string "name", where it has one).
_KINDS: dict[str, dict[str, Any]] = {
    "run": {"properties": {"at_most_once": {"type": "boolean"}, "runs_in": {"type": "integer"}}},
    "sleep": {"required": ["wake_at"], "properties": {"wake_at": {"type": "integer"}}},
    "call": _CALL,
    "send": _CALL,
    "get_state": {},
    "set_state": {"required": ["value"]},
    "clear_state": {},
    "clear_all_state": {},
    "state_keys": {"properties": {"value": {"type": "array", "items": _STR}}},
    "select": {"required": ["value"], "properties": {"value": {"type": "integer", "minimum": 0}}},
    "awakeable": {"required": ["awakeable_id"], "properties": {"awakeable_id": _STR}},
    "complete_awakeable": {
        "required": ["awakeable_id", "completion"],
        "properties": {"awakeable_id": _STR, "completion": _COMPLETION},
    },
    "get_promise": {},
    "peek_promise": {"properties": {"completion": _COMPLETION}},
    "complete_promise": {"required": ["completion"], "properties": {"completion": _COMPLETION}},
    "attach": {"required": ["invocation_id"], "properties": {"invocation_id": _STR}},
    "cancel_invocation": {"required": ["invocation_id"], "properties": {"invocation_id": _STR}},
    "output": {
        "properties": {"failure": _FAILURE},
        "oneOf": [{"required": ["value"]}, {"required": ["failure"]}],
    },
}
_COMMAND = {
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"enum": sorted(_KINDS)}, "name": _STR},
    "allOf": [
        {"if": {"properties": {"kind": {"const": kind}}}, "then": shape}
        for kind, shape in _KINDS.items()
    ],
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["commands", "completions"],
    "properties": {
        "commands": {"type": "array", "items": _COMMAND},
        "completions": {
            "type": "object",
            "propertyNames": {"pattern": "^(0|[1-9][0-9]{0,9})$"},
            "additionalProperties": _COMPLETION,
        },
    },
}
_VALIDATOR = Draft202012Validator(SCHEMA)


def checkpoint_problem(body: Any, journal_length: int) -> str | None:
    """Why ``body`` is not a checkpoint that can be appended to a journal of
    ``journal_length`` entries, or ``None``."""
    error = best_match(_VALIDATOR.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 200 else error.message[:199] + "…"
        return f"{where}: {message}" if where else message
    commands: list[dict[str, Any]] = body["commands"]
    for index, command in enumerate(commands, start=journal_length):
        problem = command_problem(command)
        if problem is not None:
            return f"commands/{index - journal_length} (journal entry {index}): {problem}"
    end = journal_length + len(commands)
    for key in body["completions"]:
        if not 1 <= int(key) < end:
            return (
                f"completion {key} names no entry of the journal (it has entries 1 to {end - 1} "
                "for new results)"
            )
    return None


__all__ = ["SCHEMA", "checkpoint_problem"]
