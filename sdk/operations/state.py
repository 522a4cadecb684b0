"""Object and workflow state: read from the eager snapshot, every read and write journaled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarry.serde import from_json, to_json

if TYPE_CHECKING:
    from tarry._attempt import Attempt


def _state(attempt: Attempt) -> dict[str, Any]:
    if attempt.state is None:
        raise TypeError("state is only available to virtual objects and workflows")
    return attempt.state


def get(attempt: Attempt, name: str, type_hint: Any = Any) -> Any:
    state = _state(attempt)
    if name in state:
        _, command = attempt.record({"kind": "get_state", "name": name, "value": state[name]})
    else:
        _, command = attempt.record({"kind": "get_state", "name": name})
    return from_json(command.get("value"), type_hint)


def keys(attempt: Attempt) -> list[str]:
    _, command = attempt.record(
        {"kind": "state_keys", "name": "", "value": sorted(_state(attempt))}
    )
    value: list[str] = command["value"]
    return value


def set_(attempt: Attempt, name: str, value: Any) -> None:
    state = _state(attempt)
    _, recorded = attempt.record({"kind": "set_state", "name": name, "value": to_json(value)})
    # On replay the value the journal wrote, which is the store's: a handler changed since
    # must not see (and journal, when it reads it back) a value that was never stored.
    state[name] = recorded["value"]


def clear(attempt: Attempt, name: str) -> None:
    state = _state(attempt)
    attempt.record({"kind": "clear_state", "name": name})
    state.pop(name, None)


def clear_all(attempt: Attempt) -> None:
    state = _state(attempt)
    attempt.record({"kind": "clear_all_state", "name": ""})
    state.clear()
