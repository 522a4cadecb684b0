"""The DynamoDB layout: keys, item⇄record translation, limits, and the table definition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tarry.runtime.store import Invocation, JournalEntry, Timer, ValueTooLarge
from tarry.runtime.store import dynamodb_layout as layout
from tarry.runtime.store.dynamodb_layout import IdempotencyRecord, InvocationRow, Turn
from tarry.runtime.store.dynamodb_table import create_table_request, table_template
from tarry.runtime.store.dynamodb_unit import TransactionTooLarge, check_limits

T0 = 1_700_000_000_000

INVOCATION = Invocation(
    id="inv_1",
    service="Counter",
    handler="add",
    key="a#b",
    exclusive=True,
    status="suspended",
    epoch=3,
    attempts=4,
    retry_count=1,
    journal_length=7,
    headers={"x-h": "v"},
    idempotency_key="idem",
    caller_id="inv_0",
    caller_index=2,
    created_at=T0,
    modified_at=T0 + 5,
    scheduled_at=T0 + 1,
    next_retry_at=T0 + 9,
    waiting_on=[3, 5],
    completion={"failure": {"code": 409, "message": "exists"}},
    completed_at=T0 + 6,
    last_failure="boom",
)


def wire_round_trip(attrs: layout.Attrs) -> layout.Attrs:
    return layout.from_wire(layout.to_wire(attrs))


def test_an_invocation_round_trips_through_its_item() -> None:
    row = InvocationRow(INVOCATION, (("inv_0", 2), ("inv_9", 4)))
    attrs = layout.invocation_attrs(row)
    assert layout.key_of(attrs) == ("inv#inv_1", "inv")
    assert layout.invocation_row(wire_round_trip(attrs)) == row


def test_an_interrupt_lease_and_queue_position_round_trip() -> None:
    row = InvocationRow(
        replace(INVOCATION, interrupt="cancel"), owner="me", lease_until=T0, queue_pos=12
    )
    assert layout.invocation_row(wire_round_trip(layout.invocation_attrs(row))) == row


def test_an_invocation_with_nothing_optional_round_trips() -> None:
    bare = replace(
        INVOCATION,
        key=None,
        idempotency_key=None,
        caller_id=None,
        caller_index=None,
        scheduled_at=None,
        next_retry_at=None,
        waiting_on=[],
        completion=None,
        completed_at=None,
        last_failure=None,
        headers={},
    )
    attrs = layout.invocation_attrs(InvocationRow(bare))
    assert "key" not in layout.to_wire(attrs)  # absent, not stored as null
    assert layout.invocation_row(wire_round_trip(attrs)) == InvocationRow(bare)


def test_an_invocation_item_carries_its_index_keys() -> None:
    attrs = layout.invocation_attrs(InvocationRow(INVOCATION))
    assert attrs[layout.SERVICE] == "Counter"
    assert attrs[layout.CREATED] == f"{T0:013d}#inv_1"
    status, shard = attrs[layout.STATUS_SHARD].split("#")
    assert status == "suspended"
    assert attrs[layout.STATUS_SHARD] in layout.status_partitions("suspended")
    assert 0 <= int(shard) < layout.STATUS_SHARDS


def test_a_completed_value_of_any_json_type_round_trips() -> None:
    for value in (0, 1.5, "", [], {}, None, {"deep": [1, {"x": None}]}, "ünïcode ✓", 10**30):
        row = InvocationRow(replace(INVOCATION, completion={"value": value}))
        assert layout.invocation_row(wire_round_trip(layout.invocation_attrs(row))) == row


def test_journal_entries_and_completions_read_back_in_index_order() -> None:
    items = [
        layout.journal_attrs("inv_1", i, {"kind": "run", "name": f"s{i}"}, T0)
        for i in (11, 2, 0, 10, 1)
    ]
    items += [
        layout.completion_attrs("inv_1", 2, {"value": 2}, T0),
        layout.completion_attrs("inv_1", 11, {"value": 11}, T0),
    ]
    items.append(layout.invocation_attrs(InvocationRow(INVOCATION)))
    commands, completions = layout.journal_of([wire_round_trip(a) for a in items])
    assert [c["name"] for c in commands] == ["s0", "s1", "s2", "s10", "s11"]
    assert completions == {"2": {"value": 2}, "11": {"value": 11}}
    # past the committed length: written by no committed write, so not part of the journal
    commands, completions = layout.journal_of(items, journal_length=3)
    assert [c["name"] for c in commands] == ["s0", "s1", "s2"]
    assert completions == {"2": {"value": 2}}


def test_journal_sort_keys_sort_by_index() -> None:
    keys = [layout.journal_key("inv_1", i)[1] for i in (0, 9, 10, 99, 100, 12345)]
    assert keys == sorted(keys)


def test_a_timer_round_trips_through_its_item_and_its_index_projection() -> None:
    timer = Timer(T0 + 1_000, "sleep", "inv_with#hash", 12)
    attrs = layout.timer_attrs(timer)
    assert layout.timer_of(wire_round_trip(attrs)) == timer
    projected = {k: attrs[k] for k in (layout.PK, layout.SK, layout.TIMER_SHARD, layout.FIRE_AT)}
    assert layout.timer_of(projected) == timer
    assert attrs[layout.TIMER_SHARD] in layout.timer_partitions()


def test_promises_state_and_turns_share_the_objects_partition_in_query_order() -> None:
    promise = layout.promise_key("Counter", "k", "p")
    state = layout.state_key("Counter", "k", "total")
    turn = layout.turn_key("Counter", "k")
    first, later = layout.queued_key("Counter", "k", 2), layout.queued_key("Counter", "k", 10)
    pk = layout.object_pk("Counter", "k")
    assert promise[0] == state[0] == turn[0] == first[0] == later[0] == pk
    assert layout.PROMISE_PREFIX <= promise[1] <= layout.PROMISE_END < layout.STATE_PREFIX
    assert layout.STATE_PREFIX <= state[1] <= layout.STATE_END < layout.TURN
    assert layout.TURN < layout.QUEUE_PREFIX < first[1] < later[1] < layout.QUEUE_END
    # the range one Query reads for an attempt (promises, state, turn) holds no queued turn
    assert not (layout.PROMISE_PREFIX <= first[1] <= layout.TURN)


def test_a_promise_round_trips_and_only_completed_ones_are_read_as_promises() -> None:
    pending = layout.Promise("Wf", "k", "a#b", waiters=(("inv_1", 3), ("inv_2", 1)))
    done = layout.Promise("Wf", "k", "done", {"failure": {"code": 403, "message": "no"}}, T0)
    for promise in (pending, done):
        attrs = wire_round_trip(layout.promise_attrs(promise))
        assert layout.promise_of("Wf", "k", promise.name, attrs) == promise
    assert layout.promise_of("Wf", "k", "new", None) == layout.Promise("Wf", "k", "new")
    items = [wire_round_trip(layout.promise_attrs(p)) for p in (pending, done)]
    items.append(layout.state_attrs("Wf", "k", "x", 1))
    assert layout.promises_of(items) == {"done": {"failure": {"code": 403, "message": "no"}}}


def test_the_timeline_joins_entries_with_their_results_up_to_the_journal_length() -> None:
    items = [
        layout.journal_attrs("inv_1", 0, {"kind": "input", "value": 1}, T0),
        layout.journal_attrs("inv_1", 1, {"kind": "run", "name": "a"}, T0 + 1),
        layout.completion_attrs("inv_1", 1, {"value": "A"}, T0 + 2),
        layout.journal_attrs("inv_1", 2, {"kind": "run", "name": "uncommitted"}, T0 + 3),
        layout.invocation_attrs(InvocationRow(replace(INVOCATION, journal_length=2))),
    ]
    assert layout.timeline_of([wire_round_trip(a) for a in items]) == [
        JournalEntry(0, {"kind": "input", "value": 1}, T0),
        JournalEntry(1, {"kind": "run", "name": "a"}, T0 + 1, {"value": "A"}, T0 + 2),
    ]
    assert layout.timeline_of(items[:-1]) == []  # no invocation: nothing to show


def test_state_entries_round_trip() -> None:
    items = [
        layout.state_attrs("Obj", "k", "a", {"x": [1, 2]}),
        layout.state_attrs("Obj", "k", "with#hash", None),
        layout.turn_attrs(Turn("Obj", "k", "inv_1", 3, 1)),
    ]
    assert layout.state_of([wire_round_trip(a) for a in items]) == {
        "a": {"x": [1, 2]},
        "with#hash": None,
    }


def test_a_turn_round_trips() -> None:
    for turn in (Turn("Obj", "k"), Turn("Obj", "k", "inv_7", 12, 3)):
        attrs = wire_round_trip(layout.turn_attrs(turn))
        assert layout.turn_of("Obj", "k", attrs) == turn
    assert layout.turn_of("Obj", "k", None) == Turn("Obj", "k")


def test_composite_keys_keep_scopes_apart() -> None:
    # without escaping, these pairs would name the same item
    assert layout.object_pk("a#b", "c") != layout.object_pk("a", "b#c")
    idem = layout.idempotency_key
    assert idem("S", "a#", "h", "k") != idem("S", "a", "#h", "k")
    assert layout.idempotency_key("S", None, "h", "k") == layout.idempotency_key("S", "", "h", "k")
    for text in ("", "#", "%", "%23", "a#b%c", "##%%"):
        assert layout.unpart(layout.part(text)) == text


def test_an_idempotency_record_round_trips_and_expires_at_its_time() -> None:
    record = IdempotencyRecord("Svc", None, "h", "idem", "inv_1", "hash", 1_000)
    assert layout.idempotency_record(wire_round_trip(layout.idempotency_attrs(record))) == record
    assert not record.expired(T0 + 10**9)  # not completed: holds however late
    done = replace(record, expires_at=T0 + 1_000)
    attrs = layout.idempotency_attrs(done)
    assert attrs[layout.TTL] > (T0 + 1_000) // 1000  # TTL deletes only after it lapsed
    assert layout.idempotency_record(wire_round_trip(attrs)) == done
    assert not done.expired(T0 + 999)
    assert done.expired(T0 + 1_000)


def test_every_key_builder_names_its_kind() -> None:
    keys = {
        "invocation": layout.invocation_key("i"),
        "journal": layout.journal_key("i", 1),
        "completion": layout.completion_key("i", 1),
        "timer": layout.timer_key("i", "retry", 0),
        "promise": layout.promise_key("S", "k", "n"),
        "state": layout.state_key("S", "k", "n"),
        "turn": layout.turn_key("S", "k"),
        "queued": layout.queued_key("S", "k", 0),
        "idempotency": layout.idempotency_key("S", None, "h", "k"),
        "deployment": layout.deployment_key("http://x"),
    }
    assert {kind: layout.kind_of(key) for kind, key in keys.items()} == {k: k for k in keys}
    with pytest.raises(ValueError):
        layout.kind_of(("inv#i", "zzz"))


def test_conditions_name_their_placeholders() -> None:
    for condition in (
        layout.ABSENT,
        layout.PRESENT,
        layout.unchanged(3),
        layout.fenced(3, 2),
        layout.timer_due(T0),
    ):
        params = condition.params()
        for name in params.get("ExpressionAttributeNames", {}):
            assert name in condition.expression
        for value in params.get("ExpressionAttributeValues", {}):
            assert value in condition.expression


# -- limits --------------------------------------------------------------------------------


def test_an_item_over_400_kb_is_refused_naming_the_limit() -> None:
    big = layout.journal_attrs("inv_1", 1, {"kind": "run", "value": "x" * 410_000}, T0)
    small = layout.journal_attrs("inv_1", 2, {"kind": "run", "value": "x"}, T0)
    check_limits([small, None], 2)
    with pytest.raises(ValueTooLarge, match="400 KB"):
        check_limits([small, big], 2)


def test_a_transaction_over_100_actions_or_4_mb_is_refused() -> None:
    item = layout.journal_attrs("inv_1", 1, {"kind": "run", "value": "x" * 300_000}, T0)
    check_limits([item] * 13, 100)
    with pytest.raises(TransactionTooLarge, match="at most 100"):
        check_limits([], 101)
    with pytest.raises(TransactionTooLarge, match="4 MB"):
        check_limits([item] * 14, 14)


def test_item_size_counts_names_and_utf8_bytes() -> None:
    assert layout.item_size({"ab": "ü"}) == 2 + 2
    assert layout.item_size({"n": 12345, "b": True, "gone": None}) >= 1 + 3 + 1 + 1


# -- the table definition --------------------------------------------------------------------


def test_the_table_definition_has_the_keys_and_indexes_the_layout_uses() -> None:
    create, after = create_table_request("my-table")
    assert create["TableName"] == "my-table"
    assert create["KeySchema"] == [
        {"AttributeName": layout.PK, "KeyType": "HASH"},
        {"AttributeName": layout.SK, "KeyType": "RANGE"},
    ]
    indexes = {i["IndexName"]: i["KeySchema"] for i in create["GlobalSecondaryIndexes"]}
    assert indexes == {
        layout.BY_SERVICE: [
            {"AttributeName": layout.SERVICE, "KeyType": "HASH"},
            {"AttributeName": layout.CREATED, "KeyType": "RANGE"},
        ],
        layout.BY_STATUS: [
            {"AttributeName": layout.STATUS_SHARD, "KeyType": "HASH"},
            {"AttributeName": layout.CREATED, "KeyType": "RANGE"},
        ],
        layout.TIMERS: [
            {"AttributeName": layout.TIMER_SHARD, "KeyType": "HASH"},
            {"AttributeName": layout.FIRE_AT, "KeyType": "RANGE"},
        ],
    }
    types = {a["AttributeName"]: a["AttributeType"] for a in create["AttributeDefinitions"]}
    assert types[layout.FIRE_AT] == "N"
    assert after == {"TimeToLiveSpecification": {"AttributeName": layout.TTL, "Enabled": True}}


def test_the_table_template_reads_cloudformation_short_forms() -> None:
    template = table_template()
    assert template["Resources"]["Table"]["Type"] == "AWS::DynamoDB::Table"
    assert template["Resources"]["Table"]["Properties"]["TableName"] == {"Ref": "TableName"}
    assert template["Outputs"]["TableArn"]["Value"] == {"Fn::GetAtt": ["Table", "Arn"]}
