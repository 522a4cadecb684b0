"""The transactions a function appends its journal with (pure: built, not sent)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tarry.errors import TerminalError
from tarry.journal_table import (
    LOCAL_COMMANDS,
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_ACTIONS,
    NotLocal,
    StateScope,
    append_transactions,
    from_wire,
)
from tarry.protocol import COMPLETABLE, Command


def _lengths(transaction: list[dict[str, Any]]) -> tuple[int, int]:
    values = from_wire(transaction[0]["Update"]["ExpressionAttributeValues"])
    return values[":base"], values[":length"]


def _keys(transaction: list[dict[str, Any]]) -> list[str]:
    out = []
    for action in transaction[1:]:
        ((kind, body),) = action.items()
        item = from_wire(body["Item"] if kind == "Put" else body["Key"])
        out.append(f"{kind} {item['sk']}")
    return out


def test_a_step_is_one_transaction_fenced_by_epoch_and_length() -> None:
    (only,) = append_transactions(
        "t", "inv_1", 3, 5, [{"kind": "run", "name": "a"}], {"5": {"value": 1}}, None, 99
    )
    fence = only[0]["Update"]
    assert fence["ConditionExpression"] == (
        "epoch = :epoch AND #status = :running AND journal_length = :base"
    )
    values = from_wire(fence["ExpressionAttributeValues"])
    assert (values[":epoch"], values[":base"], values[":length"]) == (3, 5, 6)
    assert _keys(only) == ["Put j#0000000005", "Put c#0000000005"]
    # journal entries and completions are written once
    assert all(a["Put"]["ConditionExpression"] == "attribute_not_exists(pk)" for a in only[1:])


def test_state_changes_travel_with_their_commands() -> None:
    scope = StateScope("Counter", "a", {"old", "other"})
    commands: list[Command] = [
        {"kind": "set_state", "name": "count", "value": 1},
        {"kind": "clear_state", "name": "old"},
        {"kind": "run", "name": "note"},
    ]
    (only,) = append_transactions("t", "inv_1", 1, 1, commands, {"3": {"value": "x"}}, scope, 0)
    assert _keys(only) == [
        "Put j#0000000001",
        "Put state#count",
        "Put j#0000000002",
        "Delete state#old",
        "Put j#0000000003",
        "Put c#0000000003",
    ]
    assert scope.names == {"count", "other"}
    (cleared,) = append_transactions(
        "t", "inv_1", 1, 4, [{"kind": "clear_all_state"}], {}, scope, 0
    )
    assert _keys(cleared) == ["Put j#0000000004", "Delete state#count", "Delete state#other"]


def test_a_batch_over_a_transaction_is_split_into_journal_prefixes() -> None:
    commands: list[Command] = [
        {"kind": "set_state", "name": f"k{i}", "value": i} for i in range(150)
    ]
    commands.append({"kind": "run", "name": "step"})
    scope = StateScope("Obj", "k", set())
    transactions = append_transactions(
        "t", "inv_1", 1, 1, commands, {"151": {"value": 1}, "0": {"value": 0}}, scope, 0
    )
    assert len(transactions) >= 2
    assert all(len(t) <= MAX_TRANSACTION_ACTIONS for t in transactions)
    spans = [_lengths(t) for t in transactions]
    assert spans[0][0] == 1 and spans[-1][1] == 152
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous
    assert _keys(transactions[0])[0] == "Put c#0000000000"  # an earlier completion goes first
    assert "Put c#0000000151" in _keys(transactions[-1])  # with its command


def test_what_a_function_may_not_store_is_refused_before_anything_is_built() -> None:
    for kind in ("call", "send", "sleep", "get_promise", "complete_awakeable", "attach"):
        with pytest.raises(NotLocal, match="stored by the runtime"):
            append_transactions("t", "i", 1, 1, [{"kind": kind}], {}, None, 0)
    with pytest.raises(TerminalError, match="400 KB") as raised:
        huge = {"1": {"value": "x" * MAX_ITEM_BYTES}}
        append_transactions("t", "i", 1, 1, [{"kind": "run", "name": "r"}], huge, None, 0)
    assert raised.value.status_code == 413


def test_local_commands_are_those_with_no_effect_beyond_the_invocation() -> None:
    """Guard: a completable command is completed by the runtime (a timer, a callee, a promise),
    except a run, which the function completes itself."""
    assert LOCAL_COMMANDS & COMPLETABLE == {"run", "awakeable"}  # an awakeable: from outside
    from tarry.runtime.store.dynamodb_attempt import _PROCESSORS

    # every command the store acts on when it is stored, other than state changes, is the
    # runtime's to store
    acted_on = set(_PROCESSORS) - {"set_state", "clear_state", "clear_all_state"}
    assert not acted_on & LOCAL_COMMANDS
