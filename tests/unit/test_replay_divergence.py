"""Replaying changed code: what the journal holds stands, and a call to another target than the
journal's is a mismatch, not the journal's call's result handed to a different one."""

import tarry
from tarry import ObjectContext

from .fakes import MemoryChannel, invoke, request


def ledger() -> tarry.VirtualObject:
    obj = tarry.VirtualObject("Ledger")

    @obj.handler()
    async def bump(ctx: ObjectContext) -> int:
        ctx.set("total", 5)  # the journal, made by older code, set 1
        total: int = await ctx.get("total")
        return total

    @obj.handler()
    async def forward(ctx: ObjectContext) -> int:
        total: int = await ctx.object_call(bump, key="other")  # the journal called key "k"
        return total

    return obj


async def test_a_replayed_state_write_leaves_the_value_the_journal_stored() -> None:
    """The store holds 1 (the journal's write): reading it back after the replayed write must
    give 1, and journal 1, not the value the changed code would have written."""
    journal = [{"kind": "set_state", "name": "total", "value": 1}]
    req = request("Ledger", "bump", key="k", journal=journal, state={"total": 1})
    response = await invoke(ledger(), req)
    assert response["commands"] == [
        {"kind": "get_state", "name": "total", "value": 1},
        {"kind": "output", "value": 1},
    ]


async def test_a_call_to_another_key_than_the_journals_is_a_mismatch() -> None:
    call = {"kind": "call", "name": "Ledger/bump", "service": "Ledger", "handler": "bump",
            "key": "k", "arg": None, "invocation_id": "inv_child"}  # fmt: skip
    req = request("Ledger", "forward", key="a", journal=[call], completions={"1": {"value": 9}},
                  state={}, checkpoint="channel")  # fmt: skip
    channel = MemoryChannel()
    response = await invoke(ledger(), req, channel)
    assert response["outcome"]["kind"] == "retry"
    assert response["outcome"]["non_deterministic"] is True
    assert (
        "on key 'k' but the handler now does call('Ledger/bump') on key 'other'"
        in (response["outcome"]["error"])
    )
    assert channel.appends == [] and response["commands"] == []
