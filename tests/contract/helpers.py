"""Builders and checks the contract tests share; written against the Store protocol only."""

import itertools
from typing import Any

from tarry.protocol import CANCELLED, Command, Completion, awakeable_id
from tarry.runtime.store import AttemptEnd, AttemptStart, Effects, Invocation, NewInvocation, Store

T0 = 1_700_000_000_000

_ids = itertools.count()


def new(
    *,
    id: str | None = None,
    service: str = "Svc",
    handler: str = "h",
    key: str | None = None,
    exclusive: bool | None = None,
    input: Any = "in",
    **fields: Any,
) -> NewInvocation:
    """A new invocation; keyed ones are exclusive unless told otherwise."""
    return NewInvocation(
        id=id or f"inv_{next(_ids)}",
        service=service,
        handler=handler,
        key=key,
        exclusive=key is not None if exclusive is None else exclusive,
        input=input,
        **fields,
    )


async def started(store: Store, inv: NewInvocation, now: int = T0) -> AttemptStart:
    created = await store.create(inv, now, start=True)
    assert created.started is not None, f"{inv.id} did not start: {created.invocation.status}"
    return created.started


async def status(store: Store, invocation_id: str) -> str:
    inv = await store.get(invocation_id)
    assert inv is not None
    return inv.status


COMPLETED = AttemptEnd("completed", completion={"value": "out"})
OUTPUT: list[Command] = [{"kind": "output", "value": "out"}]


async def complete(store: Store, a: AttemptStart, now: int = T0) -> Effects:
    inv = a.invocation
    return await store.end_attempt(inv.id, inv.epoch, OUTPUT, {}, [], COMPLETED, now)


def suspended(*indices: int) -> AttemptEnd:
    return AttemptEnd("suspended", waiting_on=indices)


def sleep_at(wake_at: int) -> Command:
    return {"kind": "sleep", "name": "", "wake_at": wake_at}


def call_command(child: NewInvocation) -> Command:
    return {
        "kind": "call",
        "name": f"{child.service}/{child.handler}",
        "service": child.service,
        "handler": child.handler,
        "key": child.key,
        "arg": child.input,
        "invocation_id": child.id,
    }


KILLED: Completion = {"failure": {"code": 409, "message": "killed"}}
CANCELLED_RESULT: Completion = {"failure": CANCELLED}


async def get(store: Store, invocation_id: str) -> Invocation:
    inv = await store.get(invocation_id)
    assert inv is not None, f"{invocation_id} is gone"
    return inv


async def completions(store: Store, invocation_id: str) -> dict[str, Completion]:
    return (await store.journal(invocation_id))[1]


def awk(inv: Invocation | NewInvocation, index: int) -> str:
    """The id the SDK makes for the awakeable at journal entry ``index`` of ``inv``, from the
    secret the invoke request carries (the invocation's, as the store keeps it)."""
    assert inv.secret is not None, f"{inv.id} has no secret"
    return awakeable_id(inv.id, index, inv.secret)


def awakeable_command(inv: Invocation | NewInvocation, index: int) -> Command:
    return {"kind": "awakeable", "name": "", "awakeable_id": awk(inv, index)}


def resolve_command(awk_id: str, completion: Completion) -> Command:
    return {
        "kind": "complete_awakeable",
        "name": awk_id,
        "awakeable_id": awk_id,
        "completion": completion,
    }


def get_promise(name: str) -> Command:
    return {"kind": "get_promise", "name": name}


def complete_promise(name: str, completion: Completion) -> Command:
    return {"kind": "complete_promise", "name": name, "completion": completion}


def attach_command(target_id: str) -> Command:
    return {"kind": "attach", "name": target_id, "invocation_id": target_id}


def set_state(name: str, value: Any) -> Command:
    return {"kind": "set_state", "name": name, "value": value}


def workflow_run(key: str = "k", **fields: Any) -> NewInvocation:
    """A workflow's run: exclusive on its key, once per key (the empty idempotency key)."""
    return new(service="Wf", handler="run", key=key, idempotency_key="", **fields)


def workflow_shared(key: str = "k", handler: str = "signal") -> NewInvocation:
    """One of a workflow's shared handlers: keyed, not exclusive."""
    return new(service="Wf", handler=handler, key=key, exclusive=False)


async def suspended_on_awakeable(store: Store, inv: NewInvocation, now: int = T0) -> str:
    """Start ``inv`` and suspend it on an awakeable at journal entry 1."""
    await started(store, inv, now)
    end = suspended(1)
    await store.end_attempt(inv.id, 1, [awakeable_command(inv, 1)], {}, [], end, now)
    return inv.id
